"""Execution backends: the interface, and the default the session uses."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from stepflow.backends.base import Backend, NoBackend

if TYPE_CHECKING:
    from stepflow.storage import ObjectStore


def default_backend(store: Callable[[], ObjectStore], *, region: str | None = None) -> Backend:
    """The local backend over the session's store: runs anywhere, no cluster, no cloud.
    ``region`` goes into its ARNs (None: the default region)."""
    from stepflow.backends.local import LocalBackend

    return LocalBackend(store, region=region)


__all__ = ["Backend", "NoBackend", "default_backend"]
