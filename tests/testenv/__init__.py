"""stepflow's test environment: real servers for integration tests, and helpers.

Fixtures (registered by tests/conftest.py from ``tests.testenv.plugin``): ``kube``,
``s3_server``, ``s3``, ``git_server``, ``git_remote``. Helpers importable by any test::

    from tests.testenv import wait_for, free_port, bin_path, require_binary

See docs/TESTING.md.
"""

from .binaries import INSTALL_COMMAND, BinaryMissing, bin_path, cache_dir
from .procs import ServerFailed, ServerProcess, WaitTimeout, free_port, wait_for

__all__ = [
    "INSTALL_COMMAND",
    "BinaryMissing",
    "ServerFailed",
    "ServerProcess",
    "WaitTimeout",
    "bin_path",
    "cache_dir",
    "free_port",
    "require_binary",
    "unavailable",
    "wait_for",
]


def unavailable(message: str) -> None:
    """Skip the test locally; fail it when ``CI`` is set (no silent skips in CI)."""
    import os

    import pytest

    if os.environ.get("CI"):
        pytest.fail(f"[CI] {message}", pytrace=False)
    pytest.skip(message)


def require_binary(name: str) -> str:
    """bin_path(name), or skip (locally) / fail (CI) naming the install command."""
    try:
        return bin_path(name)
    except BinaryMissing as exc:
        unavailable(str(exc))
        raise  # unreachable: unavailable() raises
