"""How the integrity key reaches the step runtime: never through an environment block.

``os.environ.pop`` does not change the environment a process was started with
(``/proc/<pid>/environ``), so a key passed in a variable can be read by whatever can read
that file, for the whole life of the process. A launcher therefore hands the key over on
an inherited pipe instead: :func:`key_pipe` writes it into a pipe and names the read end in
``STEPFLOW_INTEGRITY_KEY_FD``; :func:`read_key`, in the runtime, reads and closes it before
anything else happens. The runtime then verifies artifacts with it and signs results, and
runs user code in another process that never had it (``stepflow.runtime.isolation``).

This is the one interface a launcher needs, local or not: a pod's entrypoint can do the
same (``key_pipe`` + exec), or set ``STEPFLOW_INTEGRITY_KEY_FILE`` to a file only the
runtime's user may read. The older ``STEPFLOW_INTEGRITY_KEY`` variable still works (and is
removed from ``os.environ``), but leaves the key in the runtime's own environment block.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, MutableMapping

from stepflow.config import ENV_KEY, ENV_KEY_FILE, load_config, parse_integrity_key

KEY_FD_ENV = "STEPFLOW_INTEGRITY_KEY_FD"
#: Every variable that carries the key or says where it is; never passed to user code.
KEY_VARIABLES = (ENV_KEY, ENV_KEY_FILE, KEY_FD_ENV)

_UNREAD = object()
_key: object = _UNREAD


def read_key(environ: MutableMapping[str, str] = os.environ) -> bytes | None:
    """The key, read once per process (a forked child keeps the parent's), or None.

    From the pipe named by ``STEPFLOW_INTEGRITY_KEY_FD`` (read to its end, then closed),
    else from the configuration (``STEPFLOW_INTEGRITY_KEY``, ``STEPFLOW_INTEGRITY_KEY_FILE``,
    the config file). Removes the key's variables from ``environ`` either way.
    """
    global _key
    if _key is _UNREAD:
        fd = environ.get(KEY_FD_ENV)
        if fd is not None:
            text = _read_fd(fd)
            _key = parse_integrity_key(text, f"file descriptor {fd}") if text.strip() else None
        else:
            _key = load_config(environ).integrity_key
        for name in (ENV_KEY, KEY_FD_ENV):
            environ.pop(name, None)
    assert _key is None or isinstance(_key, bytes)
    return _key


def configured_key(env: Mapping[str, str]) -> bytes | None:
    """The key a launcher's environment configures (variable, file, config file), read
    without touching this process's own state; for launchers, which then pass it on with
    :func:`key_pipe`."""
    return load_config(env).integrity_key


def key_pipe(key: bytes | None) -> tuple[int | None, dict[str, str]]:
    """A readable fd holding ``key`` to pass to a runtime (``pass_fds``), and the variable.

    The caller closes the fd once the child is started. ``(None, {})`` without a key.
    """
    if key is None:
        return None, {}
    read, write = os.pipe()
    try:
        os.write(write, key.hex().encode())  # far below a pipe's buffer: never blocks
    finally:
        os.close(write)
    return read, {KEY_FD_ENV: str(read)}


def without_key(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` without any variable that carries or locates the key."""
    return {k: v for k, v in env.items() if k not in KEY_VARIABLES}


def _read_fd(fd: str) -> str:
    try:
        number = int(fd)
        chunks = []
        while chunk := os.read(number, 4096):
            chunks.append(chunk)
        os.close(number)
    except (ValueError, OSError) as exc:
        from stepflow.errors import ConfigurationError

        raise ConfigurationError(
            f"{KEY_FD_ENV}={fd!r} does not name a readable file descriptor ({exc}); the "
            "launcher must pass the key's pipe to the runtime (pass_fds)") from exc
    return b"".join(chunks).decode(errors="replace")
