"""Advisory file locks (flock) shared by processes on one machine.

Used wherever two processes may touch the same cache entry or execution: the git cache,
the requirements venvs, an execution's orchestrator. A lock dies with its holder, which is
why we use flock and not lock files: a killed process never leaves a stale lock behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import IO

_POLL = 0.02


def _try(handle: IO[str], mode: int = fcntl.LOCK_EX) -> bool:
    try:
        fcntl.flock(handle, mode | fcntl.LOCK_NB)
        return True
    except OSError as exc:
        if exc.errno not in (errno.EAGAIN, errno.EACCES):
            raise
        return False


@contextlib.contextmanager
def flock(path: Path | str, *, wait: float | None = None) -> Iterator[bool]:
    """Hold an exclusive lock on ``path`` (created if missing); yields whether it is held.

    ``wait=None`` blocks until the lock is free; otherwise gives up after ``wait`` seconds
    (0: a single try) and yields False, so callers can say who holds it.
    """
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        if wait is None:
            fcntl.flock(handle, fcntl.LOCK_EX)
            held = True
        else:
            deadline = time.monotonic() + wait
            held = _try(handle)
            while not held and time.monotonic() < deadline:
                time.sleep(_POLL)
                held = _try(handle)
        try:
            yield held
        finally:
            if held:
                fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.asynccontextmanager
async def aflock(path: Path | str, *, poll: float = 0.1) -> AsyncIterator[None]:
    """``flock`` for coroutines: waits for other processes without blocking the event loop."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        while not _try(handle):
            await asyncio.sleep(poll)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def is_locked(path: Path | str) -> bool:
    """True when another process holds ``path``'s lock (a live orchestrator, a running step)."""
    with flock(path, wait=0) as held:
        return not held
