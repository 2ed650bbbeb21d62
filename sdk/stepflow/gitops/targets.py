"""Where a Pipeline's things go: its object store and the backend that runs it.

Both front ends (the operator, ``stepflow up``) and the reconciler ask this one object, so a
new backend is a new entry in ``backends`` and nothing else changes: the reconciler upserts
through the :class:`~stepflow.backends.base.Backend` interface, the execution runner runs
through it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping

from stepflow import layout
from stepflow.backends.base import Backend
from stepflow.errors import ConfigurationError
from stepflow.gitops.spec import PipelineSpec
from stepflow.storage import ObjectStore, open_store

#: Builds a backend over a pipeline's store, for that Pipeline (its namespace, its overrides).
BackendFactory = Callable[[ObjectStore, PipelineSpec], Backend]


def _local(store: ObjectStore, spec: PipelineSpec) -> Backend:
    from stepflow.backends.local import LocalBackend

    return LocalBackend(store)


def sagemaker_backend(store: ObjectStore, spec: PipelineSpec) -> Backend:
    """``spec.sagemaker.roleArn`` reaches upsert through the reconciler."""
    return _sagemaker_for(store)


@functools.cache
def _sagemaker_for(store: ObjectStore) -> Backend:
    """One per store (stores are shared per root): one boto3 client, and one poller per
    execution however many callers follow it."""
    from stepflow.backends.sagemaker import SageMakerBackend
    from stepflow.config import load_config

    # spec.sagemaker.roleArn reaches upsert through the reconciler; this is the default.
    return SageMakerBackend(store, role_arn=load_config().pipeline.get("RoleArn"))


class Targets:
    """Stores are opened once per root URI and shared; backends are cheap views over them.

    With ``per_resource`` (the operator), each Pipeline resource gets a store of its own,
    ``<root>/<namespace>/<name>`` (:func:`stepflow.layout.resource_prefix`): everything the
    operator publishes and executes is keyed by the resource, not by the name the user's
    module gives its pipeline, so two resources building the same module from two branches
    into one bucket each run their own definition. The pipeline keeps the user's name (the
    one SageMaker knows); ``status.definition.uri`` shows where it went. ``stepflow up``
    uses the root itself, which the CLI's ``--store`` reads.
    """

    def __init__(self, *, default_s3_root_uri: str | None = None, s3_endpoint_url: str | None = None,
                 backends: Mapping[str, BackendFactory] | None = None, default_backend: str = "local",
                 per_resource: bool = False) -> None:
        self.default_s3_root_uri = default_s3_root_uri
        #: What a Pipeline that leaves ``spec.backend`` empty runs on.
        self.default_backend = default_backend
        self.s3_endpoint_url = s3_endpoint_url
        self.backends: dict[str, BackendFactory] = dict(backends or {"local": _local, "sagemaker": sagemaker_backend})
        self.per_resource = per_resource
        self._stores: dict[str, ObjectStore] = {}

    def store_for(self, spec: PipelineSpec) -> ObjectStore:
        uri = spec.s3_root_uri or self.default_s3_root_uri
        if not uri:
            from stepflow.config import load_config

            uri = load_config().s3_root_uri
        if self.per_resource:
            if not spec.namespace:
                raise ValueError(f"Pipeline {spec.name}: per-resource stores need the resource's namespace")
            uri = f"{uri.rstrip('/')}/{layout.resource_prefix(spec.namespace, spec.name)}"
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
