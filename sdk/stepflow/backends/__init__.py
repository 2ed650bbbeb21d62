"""Execution backends: the interface, and the default the session uses."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from stepflow.backends.base import Backend, NoBackend
from stepflow.errors import ConfigurationError

if TYPE_CHECKING:
    from stepflow.config import StepflowConfig
    from stepflow.storage import ObjectStore

#: What the configuration's ``backend`` (``Stepflow.Backend``, ``STEPFLOW_BACKEND``) may name.
CONFIGURABLE = ("local", "sagemaker")


def default_backend(store: Callable[[], ObjectStore], config: StepflowConfig | None = None, *,
                    region: str | None = None) -> Backend:
    """The configured backend over the session's store; without a configuration, the local
    one (runs anywhere, no cluster, no cloud). ``sagemaker`` makes ported code's
    ``pipeline.upsert(role_arn=...)`` and ``pipeline.start()`` reach SageMaker unchanged.
    ``region`` goes into the local backend's ARNs (None: the default region)."""
    name = config.backend if config is not None else "local"
    if name == "local":
        from stepflow.backends.local import LocalBackend

        return LocalBackend(store, region=region)
    if name == "sagemaker":
        from stepflow.backends.sagemaker import SageMakerBackend

        assert config is not None
        return SageMakerBackend(store, role_arn=config.pipeline.get("RoleArn"))
    origin = config.origins.get("backend", "the configuration") if config is not None else "the configuration"
    raise ConfigurationError(f"backend {name!r} (from {origin}) is not one of {', '.join(CONFIGURABLE)}; "
                             "set Stepflow.Backend in the configuration file, or STEPFLOW_BACKEND, to one of them.",
                             reason="UnsupportedBackend")


__all__ = ["CONFIGURABLE", "Backend", "NoBackend", "default_backend"]
