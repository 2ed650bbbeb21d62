"""The session: where artifacts go, how they are signed, and which backend runs pipelines.

Explicit arguments win over the configuration (``stepflow.config.load_config``:
environment, then YAML files, then defaults). Ported code passes a session as
``sagemaker_session=``; any Session works there.
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING, Any

from stepflow.backends import Backend, default_backend
from stepflow.workflow.defaults import default_region

if TYPE_CHECKING:
    from stepflow.config import StepflowConfig
    from stepflow.storage import ObjectStore


class Session:
    def __init__(self, s3_root_uri: str | None = None, *, s3_endpoint_url: str | None = None,
                 integrity_key: bytes | None = None, region: str | None = None,
                 backend: Backend | None = None,
                 config: "StepflowConfig | None" = None) -> None:
        self._s3_root_uri = s3_root_uri
        self._s3_endpoint_url = s3_endpoint_url
        self._integrity_key = integrity_key
        self._region = region
        self._config = config
        self.backend = backend if backend is not None else default_backend(lambda: self.store)

    @cached_property
    def config(self) -> "StepflowConfig":
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
        """The configured @step defaults (spec §8 keys), below decorator values."""
        return dict(self.config.remote_function or {})

    @cached_property
    def store(self) -> "ObjectStore":
        from stepflow.storage import open_store

        return open_store(self.s3_root_uri, self.s3_endpoint_url)


PipelineSession = Session
