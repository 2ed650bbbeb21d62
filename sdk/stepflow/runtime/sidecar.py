"""How a trusted container learns that the step's container beside it has ended.

A pod's containers share no process namespace (``shareProcessNamespace`` would let user
code read the trusted containers' environment and files through ``/proc``) and have no API
access, so the step's container says it is done through the emptyDir they share: it writes
an *exit file* when it ends. A container killed whole (the kernel's OOM killer with
``memory.oom.group``, a deadline) writes nothing; for that the step's container also holds a
*lock file* for as long as it lives (:func:`hold`): an flock dies with its holder, so a
released lock without an exit file means the container is gone.
"""

from __future__ import annotations

import errno
import fcntl
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")
#: How often the waiter looks (local files: cheap).
POLL = 0.2


def hold(lock: Path) -> int:
    """Hold ``lock`` until this process ends; its fd (not inherited by children).

    Locked under a temporary name, then renamed, so the waiter never sees the file unlocked
    before it is held.
    """
    temporary = lock.with_name(f"{lock.name}.{os.getpid()}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.rename(temporary, lock)
    return fd


def released(lock: Path) -> bool:
    """True once the holder of ``lock`` has ended; False while it lives or before it started."""
    try:
        fd = os.open(lock, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return True
    except OSError as exc:
        if exc.errno not in (errno.EAGAIN, errno.EACCES):
            raise
        return False
    finally:
        os.close(fd)


def wait_for_exit(read: Callable[[], T | None], lock: Path | None = None) -> T | None:
    """Wait until ``read`` returns the exit file's content; None when ``lock`` was released
    without one (the step's container ended without writing it)."""
    while True:
        value = read()
        if value is not None:
            return value
        if lock is not None and released(lock):
            return read()  # written just before it ended, or never
        time.sleep(POLL)
