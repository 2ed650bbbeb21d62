"""Where a Pipeline's things go: its object store and the backend that runs it.

Both front ends (the operator, ``stepflow up``) and the reconciler ask this one object, so a
new backend is a new entry in ``backends`` and nothing else changes: the reconciler upserts
through the :class:`~stepflow.backends.base.Backend` interface, the execution runner runs
through it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from stepflow.backends.base import Backend
from stepflow.errors import ConfigurationError
from stepflow.gitops.spec import PipelineSpec
from stepflow.storage import ObjectStore, open_store

#: Builds a backend over a pipeline's store, for that Pipeline (its namespace, its overrides).
BackendFactory = Callable[[ObjectStore, PipelineSpec], Backend]


def _local(store: ObjectStore, spec: PipelineSpec) -> Backend:
    from stepflow.backends.local import LocalBackend

    return LocalBackend(store)


class Targets:
    """Stores are opened once per root URI and shared; backends are cheap views over them."""

    def __init__(self, *, default_s3_root_uri: str | None = None, s3_endpoint_url: str | None = None,
                 backends: Mapping[str, BackendFactory] | None = None, default_backend: str = "local") -> None:
        self.default_s3_root_uri = default_s3_root_uri
        #: What a Pipeline that leaves ``spec.backend`` empty runs on.
        self.default_backend = default_backend
        self.s3_endpoint_url = s3_endpoint_url
        self.backends: dict[str, BackendFactory] = dict(backends or {"local": _local})
        self._stores: dict[str, ObjectStore] = {}

    def store_for(self, spec: PipelineSpec) -> ObjectStore:
        uri = spec.s3_root_uri or self.default_s3_root_uri
        if not uri:
            from stepflow.config import load_config

            uri = load_config().s3_root_uri
        if uri not in self._stores:
            self._stores[uri] = open_store(uri, self.s3_endpoint_url)
        return self._stores[uri]

    def backend_for(self, spec: PipelineSpec) -> Backend:
        name = spec.backend or self.default_backend
        factory = self.backends.get(name)
        if factory is None:
            raise ConfigurationError(
                f"Pipeline {spec.name}: spec.backend {name!r} is not served here; this "
                f"installation runs {', '.join(sorted(self.backends))}.", reason="BackendNotAvailable")
        return factory(self.store_for(spec), spec)
