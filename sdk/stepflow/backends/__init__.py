"""Execution backends: the interface, and the default the session uses."""

from stepflow.backends.base import Backend, NoBackend


def default_backend() -> Backend:
    """The backend a Session uses when given none (the local backend, once it exists)."""
    return NoBackend()


__all__ = ["Backend", "NoBackend", "default_backend"]
