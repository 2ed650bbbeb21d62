"""The session: where artifacts go, how they are signed, and which backend runs pipelines.

Explicit arguments win over the configuration (``stepflow.config.load_config``:
environment, then YAML files, then defaults). Ported code passes a session as
``sagemaker_session=``; any Session works there.

The session is the one seam between the user API and the compiler: ``Pipeline`` compiles
and publishes through :meth:`Session.compile` and :meth:`Session.published`, which import
the compiler only when called and hand it the pipeline plus this session's store root,
integrity key, region and @step defaults as arguments.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from functools import cached_property
from typing import TYPE_CHECKING, Any

from stepflow.backends import Backend, default_backend
from stepflow.workflow.defaults import default_region

if TYPE_CHECKING:
    from stepflow.compiler.bundle import Bundle
    from stepflow.config import StepflowConfig
    from stepflow.storage import ObjectStore
    from stepflow.workflow.pipeline import Pipeline


class Session:
    def __init__(self, s3_root_uri: str | None = None, *, s3_endpoint_url: str | None = None,
                 integrity_key: bytes | None = None, region: str | None = None,
                 backend: Backend | None = None,
                 config: StepflowConfig | None = None) -> None:
        self._s3_root_uri = s3_root_uri
        self._s3_endpoint_url = s3_endpoint_url
        self._integrity_key = integrity_key
        self._region = region
        self._config = config
        self.backend = backend if backend is not None else default_backend(lambda: self.store, self.config)

    @cached_property
    def config(self) -> StepflowConfig:
        if self._config is not None:
            return self._config
        from stepflow.config import load_config

        return load_config()

    @property
    def s3_root_uri(self) -> str:
        return (self._s3_root_uri or self.config.s3_root_uri).rstrip("/")

    @property
    def s3_endpoint_url(self) -> str | None:
        return self._s3_endpoint_url or self.config.s3_endpoint_url

    @property
    def integrity_key(self) -> bytes | None:
        return self._integrity_key if self._integrity_key is not None else self.config.integrity_key

    @property
    def region(self) -> str:
        return self._region or default_region()

    @property
    def remote_function_defaults(self) -> dict[str, Any]:
        """The configured @step defaults (``RemoteFunction`` keys of
        docs/SAGEMAKER-COMPATIBILITY.md), below decorator values."""
        return dict(self.config.remote_function or {})

    @cached_property
    def store(self) -> ObjectStore:
        from stepflow.storage import open_store

        return open_store(self.s3_root_uri, self.s3_endpoint_url)

    def compile(self, pipeline: Pipeline, out_dir: str | None = None, *,
                s3_root_uri: str | None = None,
                previous_index: Mapping[str, str] | None = None) -> Bundle:
        """Compile ``pipeline`` for this session into a bundle folder (nothing is uploaded).

        ``previous_index`` (published key → sha256) lets unchanged steps keep their
        folders; None reads it from this session's store.
        """
        from stepflow.compiler import compile_pipeline
        from stepflow.compiler.publish import read_index

        if previous_index is None:
            previous_index = read_index(self.store, pipeline.name)
        return compile_pipeline(
            pipeline, s3_root_uri=s3_root_uri or self.s3_root_uri, out_dir=out_dir,
            previous_index=previous_index, integrity_key=self.integrity_key,
            region=self.region, remote_function_defaults=self.remote_function_defaults)

    @contextmanager
    def published(self, pipeline: Pipeline) -> Iterator[Bundle]:
        """Compile once into a scratch bundle, publish it to this session's store, and
        remove the bundle when the block ends."""
        from stepflow.compiler.bundle import scratch_dir
        from stepflow.compiler.publish import publish

        bundle = self.compile(pipeline, scratch_dir())
        try:
            publish(bundle, self.store)
            yield bundle
        finally:
            shutil.rmtree(bundle.root, ignore_errors=True)


PipelineSession = Session
