"""The process jail: runs one command as a limited, scrubbed, unprivileged process.

A build imports the user's module, which may do anything at import time, and ``pip`` runs
an sdist's ``setup.py``, which is user code too. So each runs as a separate process that:

* gets an environment built from an allow-list (PATH, LANG, a private HOME and TMPDIR,
  SOURCE_DATE_EPOCH, PYTHONHASHSEED, PYTHONDONTWRITEBYTECODE): nothing of the operator's
  environment, so no AWS_* and no KUBERNETES_* reach it;
* runs as another, unprivileged user (``uid``, default 65534) when the operator is root, so
  it can read neither the operator's files (the service-account token and secret files must
  be mounted 0400/0440, see the chart) nor ``/proc/<operator>/environ``;
* has a wall-clock limit, an address-space limit (RLIMIT_AS: an unbounded allocation
  becomes ``MemoryError``) and a CPU-time limit;
* is confined (:mod:`stepflow.confine`): every process it starts, daemons included, dies
  when it ends, when it times out and when the operator dies, even by SIGKILL; with
  namespaces (the operator has CAP_SYS_ADMIN) it also gets private ``/tmp``, ``/var/tmp``,
  ``/dev/shm`` and ``/proc``, gone when it ends; its ``HOME`` and ``TMPDIR`` are private
  folders removed when it ends, in every mode;
* keeps only a bounded tail of its output.

When the operator is not root it cannot switch users: the process then runs as the
operator's own user and only the environment and limits protect the operator. The chart
therefore runs the operator as uid 0 with every capability dropped except the few this
module needs (CHOWN, DAC_OVERRIDE, KILL, SETUID, SETGID).

Concurrent builds share the one sandbox uid, so they are isolated from the operator but
not from each other; a multi-tenant installation that needs the latter runs builds in pods.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from stepflow import confine
from stepflow.gitops.sandbox.paths import walk
from stepflow.gitops.sandbox.settings import Limits, SandboxError, SandboxSettings
from stepflow.gitops.sandbox.warm import WarmWorker, WorkerLost

log = logging.getLogger(__name__)

_LOG_TAIL_LINES = 40
#: How long a confined process has to kill what it started after SIGTERM, before SIGKILL.
_STOP_GRACE = 5.0
#: Interpreters whose missing namespaces were already logged.
_LOGGED: set[str] = set()


@dataclass(frozen=True)
class ProcessResult:
    """How a sandboxed process ended."""

    returncode: int
    timed_out: bool
    output: str  # the bounded tail
    output_bytes: int  # everything it wrote, counted
    duration: float

    @property
    def signal(self) -> int | None:
        return -self.returncode if self.returncode < 0 else None


class Jail:
    """Runs commands as the sandbox user, and hands folders to it and back."""

    def __init__(self, settings: SandboxSettings) -> None:
        self.settings = settings

    def check_reachable(self, path: Path, what: str) -> None:
        """The sandbox user must be able to walk down to ``path``; say which folder blocks it."""
        if self.settings.uid is None:
            return
        for folder in reversed(path.resolve().parents):
            if not os.stat(folder).st_mode & stat.S_IXOTH:
                raise SandboxError(
                    f"{what} {path} is under {folder}, which uid {self.settings.uid} cannot "
                    f"enter (mode {stat.filemode(os.stat(folder).st_mode)}); put it under a "
                    "folder others may traverse (chmod o+x), e.g. /var/cache/stepflow")

    async def run(self, argv: Sequence[str], *, cwd: Path, limits: Limits,
                  source_date_epoch: int | None = None, worker: WarmWorker | None = None,
                  worker_args: Sequence[str] = ()) -> ProcessResult:
        """Run ``argv`` sandboxed; the output is merged, bounded, and returned at the end.

        With a ``worker`` (whose interpreter is ``argv[0]``), its fork server runs
        ``worker_args`` (what ``argv`` runs, less the interpreter and module) in a confined
        child, the same confinement, user, environment and limits, unless it cannot start
        (then ``argv`` runs as usual). Raises ``WorkerLost`` when the worker died during the
        run (the caller runs it again cold), and ``OSError`` when the process cannot be
        started at all. (When the sandbox user may not execute the command, it exits 127
        saying so: see ``Venvs._check_runnable``, which turns that into a ``SandboxError``
        up front.)
        """
        settings = self.settings
        scratch = Path(tempfile.mkdtemp(prefix="run-", dir=settings.work_dir / "runs"))
        home, tmp = scratch / "home", scratch / "tmp"
        home.mkdir(mode=0o700)
        tmp.mkdir(mode=0o700)
        self.hand_over(scratch)
        env = scrubbed_environment(home=home, tmp=tmp, bin_dir=Path(argv[0]).parent,
                                   source_date_epoch=source_date_epoch)
        spec = confine.spec(mode=await self.mode(), uid=settings.uid, gid=settings.gid,
                            memory_bytes=limits.memory_bytes, cpu_seconds=limits.effective_cpu_seconds,
                            tmpfs_bytes=settings.tmpfs_bytes, keep=[settings.work_dir, cwd, *settings.site_dirs,
                                                                  *confine.import_roots()])
        tail = _Tail(settings.output_limit)
        started = time.monotonic()
        try:
            if worker is not None and await worker.ensure():
                warm = worker.run(worker_args, cwd=cwd, env=env, spec=spec, on_output=tail.add)
                try:
                    await warm.started
                except asyncio.CancelledError:
                    warm.abandon()
                    raise
                process: _Running = warm
            else:
                process = await _Cold.start(settings.python, argv, spec, cwd=cwd, env=env, tail=tail)
        except BaseException:
            shutil.rmtree(scratch, ignore_errors=True)
            raise
        timed_out = False
        try:
            await asyncio.wait_for(asyncio.shield(process.exited), timeout=limits.timeout)
        except TimeoutError:
            timed_out = True
        finally:
            await _stop(process)
            # A process that left the group could hold the pipe open: do not wait for it.
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(process.closed), timeout=2.0)
            process.close()
            shutil.rmtree(scratch, ignore_errors=True)
        returncode = process.returncode
        assert returncode is not None
        return ProcessResult(returncode=returncode, timed_out=timed_out, output=tail.text(),
                             output_bytes=tail.total, duration=time.monotonic() - started)

    async def mode(self) -> str:
        """``namespaces`` when the machine allows them (probed once), else ``reaper``."""
        if self.settings.confinement is not None:
            return self.settings.confinement
        python = self.settings.python
        mode, problem = await asyncio.to_thread(confine.best_mode, python)
        if problem and python not in _LOGGED:
            _LOGGED.add(python)
            log.warning("builds run without pid and mount namespaces (%s): a subreaper "
                        "still kills every process a build leaves, but /tmp, /var/tmp and "
                        "/dev/shm are the host's; grant CAP_SYS_ADMIN for private ones",
                        problem)
        return mode

    def hand_over(self, root: Path) -> None:
        """Give a tree to the sandbox user (symlinks themselves, never what they point at)."""
        if self.settings.uid is not None:
            _chown_tree(root, self.settings.uid, self.settings.gid or self.settings.uid)

    def take_back(self, root: Path) -> None:
        """Make a tree the operator's again, read-only to others; the sandbox can't change it."""
        if self.settings.uid is None:
            return
        _chown_tree(root, os.geteuid(), os.getegid())
        for path in walk(root):
            st = os.lstat(path)
            if not stat.S_ISLNK(st.st_mode):
                os.chmod(path, stat.S_IMODE(st.st_mode) & ~0o022 | 0o444
                         | (0o111 if stat.S_ISDIR(st.st_mode) else 0))


def scrubbed_environment(*, home: Path, tmp: Path, bin_dir: Path,
                         source_date_epoch: int | None) -> dict[str, str]:
    """The whole environment of a sandboxed process: an allow-list, nothing inherited."""
    env = {
        "PATH": f"{bin_dir}:/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "HOME": str(home),
        "TMPDIR": str(tmp),
        "PYTHONHASHSEED": "0",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    if source_date_epoch is not None:
        env["SOURCE_DATE_EPOCH"] = str(int(source_date_epoch))
    return env


def log_tail(output: str, lines: int = _LOG_TAIL_LINES) -> str:
    """The last lines of a process's output: what a status or an event can carry."""
    return "\n".join(output.splitlines()[-lines:])


def last_error_line(output: str) -> str:
    """The line of a process's output most likely to say what went wrong."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    for line in reversed(lines):
        if re.match(r"^[A-Za-z_.]*(Error|Exception)\b|^ERROR:", line):
            return line[:300]
    return lines[-1][:300] if lines else "no output"


def _chown_tree(root: Path, uid: int, gid: int) -> None:
    for path in walk(root):
        os.chown(path, uid, gid, follow_symlinks=False)


async def _stop(process: _Running) -> None:
    """End a confined process and everything it started; it is reaped when this returns.

    SIGTERM makes the supervisor kill what the command started (see ``stepflow.confine``);
    SIGKILL to its group is the backstop when it does not exit within the grace period.
    """
    pid = process.pid
    if not process.exited.done():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        with contextlib.suppress(asyncio.TimeoutError, WorkerLost):
            await asyncio.wait_for(asyncio.shield(process.exited), timeout=_STOP_GRACE)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    await process.exited


class _Running(Protocol):
    """A started confined process, cold (:class:`_Cold`) or forked by the warm worker."""

    pid: int
    exited: asyncio.Future[None]
    closed: asyncio.Future[None]

    @property
    def returncode(self) -> int | None: ...

    def close(self) -> None: ...


class _Cold:
    """The supervisor started as a fresh process (``confine.command``)."""

    def __init__(self, transport: asyncio.SubprocessTransport, protocol: _Protocol) -> None:
        self.transport, self.pid = transport, transport.get_pid()
        self.exited, self.closed = protocol.exited, protocol.closed

    @classmethod
    async def start(cls, python: str, argv: Sequence[str], spec: dict, *, cwd: Path,
                    env: dict[str, str], tail: _Tail) -> _Cold:
        """``python`` runs the supervisor, which runs ``argv``."""
        loop = asyncio.get_running_loop()
        command = confine.command(python, argv, spec)
        transport, protocol = await loop.subprocess_exec(
            lambda: _Protocol(loop, tail), *command, cwd=cwd, env=env,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            process_group=0, close_fds=True)
        return cls(transport, protocol)

    @property
    def returncode(self) -> int | None:
        return self.transport.get_returncode()

    def close(self) -> None:
        self.transport.close()


class _Tail:
    """The last ``limit`` bytes of a stream, and how many bytes there were in all."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.total = 0
        self._chunks: deque[bytes] = deque()
        self._size = 0

    def add(self, chunk: bytes) -> None:
        self.total += len(chunk)
        self._chunks.append(chunk)
        self._size += len(chunk)
        while self._size - len(self._chunks[0]) >= self.limit:
            self._size -= len(self._chunks.popleft())

    def text(self) -> str:
        data = b"".join(self._chunks)[-self.limit:]
        prefix = f"[... {self.total - len(data)} bytes cut ...]\n" if self.total > len(data) else ""
        return prefix + data.decode(errors="replace")


class _Protocol(asyncio.SubprocessProtocol):
    """Collects output and says when the process exits, which may be before its pipe closes.

    (``asyncio.subprocess.Process.wait`` also waits for the pipes, so a grandchild that
    escaped the process group and kept stdout would hold it forever.)
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, tail: _Tail) -> None:
        self.tail = tail
        self.exited: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        self.tail.add(data)

    def process_exited(self) -> None:
        if not self.exited.done():
            self.exited.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)
