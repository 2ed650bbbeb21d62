"""The operator's side of the warm build worker (:mod:`.forkserver`).

``WarmWorker`` starts the fork server, sends it one request per build and turns its answers
into a :class:`WarmProcess`, which the jail waits for, times out and stops exactly like a
process it started itself (the pid it signals is the build's supervisor). When the server
dies, every build in flight fails with :class:`WorkerLost` (their supervisors die with the
server, and with them the builds), and the caller runs them cold; the next build starts a
new server.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: The largest message either side sends (a request is a few kB: the environment and the
#: build's arguments).
MAX_MESSAGE = 1 << 16

#: How long the server may take to import stepflow and get ready.
READY_TIMEOUT = 60.0
#: After the server could not start, builds run cold for this long before it is tried again.
RETRY_AFTER = 60.0


class WorkerLost(Exception):
    """The fork server died or could not start; the build did not run (or was killed)."""


class WarmProcess:
    """One build in the fork server, seen as a process: its supervisor's pid and its end."""

    def __init__(self, loop: asyncio.AbstractEventLoop, on_output: Callable[[bytes], None]) -> None:
        self.pid = 0
        self.started: asyncio.Future[int] = loop.create_future()
        self.exited: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()
        self.returncode: int | None = None
        self.on_output = on_output
        self._transport: asyncio.ReadTransport | None = None
        self._abandoned = False

    def _ended(self, status: int) -> None:
        self.returncode = os.waitstatus_to_exitcode(status)
        if not self.exited.done():
            self.exited.set_result(None)

    def _lost(self, why: str) -> None:
        for future in (self.started, self.exited):
            if not future.done():
                future.set_exception(WorkerLost(why))
                future.exception()  # retrieved: the jail asks again
        if not self.closed.done():
            self.closed.set_result(None)

    def abandon(self) -> None:
        """Nobody waits for this build any more: end it as soon as it is known."""
        self._abandoned = True
        if self.pid:
            _terminate(self.pid)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


def _terminate(pid: int) -> None:
    """SIGTERM a build's supervisor, which kills everything the build started."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)


class _Output(asyncio.Protocol):
    def __init__(self, process: WarmProcess) -> None:
        self.process = process

    def data_received(self, data: bytes) -> None:
        self.process.on_output(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.process.closed.done():
            self.process.closed.set_result(None)


class WarmWorker:
    """One fork server for one interpreter, on the event loop that started it."""

    #: The server's module (``python -m``).
    MODULE = "stepflow.gitops.sandbox.forkserver"

    def __init__(self, python: str, *, env: Mapping[str, str], cwd: Path) -> None:
        self.python, self.env, self.cwd = python, dict(env), cwd
        self.loop: asyncio.AbstractEventLoop | None = None
        self.pid: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._sock: socket.socket | None = None
        self._ready: asyncio.Future[int] | None = None
        self._starting: asyncio.Task[None] | None = None
        self._pending: dict[int, WarmProcess] = {}
        self._next_id = 0
        self._failed_at = -RETRY_AFTER

    @property
    def alive(self) -> bool:
        return self._sock is not None and self._ready is not None and self._ready.done() \
            and not self._ready.exception()

    async def ensure(self) -> bool:
        """Start the server unless it runs; False when builds should run cold for now."""
        loop = asyncio.get_running_loop()
        if self.loop is not None and self.loop is not loop:
            self.close()  # the loop it answered on is gone (tests run one loop each)
        if self.alive:
            return True
        if time.monotonic() - self._failed_at < RETRY_AFTER:
            return False
        if self._starting is None or self._starting.done():
            self._starting = loop.create_task(self._start(loop))
        try:
            await asyncio.shield(self._starting)
        except (OSError, WorkerLost, TimeoutError) as exc:
            self._failed_at = time.monotonic()
            log.warning("the warm build worker could not start (%s); builds start a fresh "
                        "interpreter each for %.0fs, then it is tried again", exc, RETRY_AFTER)
            self.close()
            return False
        return True

    async def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        self.close()
        self.loop = loop
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            # Started from the loop's thread: PR_SET_PDEATHSIG follows the thread that forked.
            self._proc = subprocess.Popen(
                [self.python, "-s", "-P", "-m", self.MODULE,
                 str(theirs.fileno()), str(os.getpid())],
                env=self.env, cwd=self.cwd, pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=sys.stderr, start_new_session=True)
        finally:
            theirs.close()
        ours.setblocking(False)
        self._sock, self.pid = ours, self._proc.pid
        self._ready = loop.create_future()
        loop.add_reader(ours.fileno(), self._readable)
        self.pid = await asyncio.wait_for(asyncio.shield(self._ready), READY_TIMEOUT)
        log.info("warm build worker started (pid %d, %s)", self.pid, self.python)

    def run(self, args: Sequence[str], *, cwd: Path, env: Mapping[str, str], spec: Mapping[str, Any],
            on_output: Callable[[bytes], None]) -> WarmProcess:
        """Start one build; ``await process.started`` before signalling ``process.pid``."""
        assert self.loop is not None and self._sock is not None
        process = WarmProcess(self.loop, on_output)
        read, write = os.pipe()
        try:
            self._next_id += 1
            request = {"id": self._next_id, "args": list(args), "cwd": str(cwd), "env": dict(env),
                       "spec": dict(spec)}
            try:
                socket.send_fds(self._sock, [json.dumps(request).encode()], [write])
            except OSError as exc:
                self._gone(f"the request could not be sent: {exc}")
                process._lost(f"the warm build worker is gone ({exc})")
                os.close(read)
                return process
            self._pending[self._next_id] = process
        finally:
            os.close(write)
        pipe = os.fdopen(read, "rb", buffering=0)
        self.loop.create_task(self._connect(process, pipe))
        return process

    async def _connect(self, process: WarmProcess, pipe: Any) -> None:
        assert self.loop is not None
        process._transport, _ = await self.loop.connect_read_pipe(lambda: _Output(process), pipe)

    def _readable(self) -> None:
        assert self._sock is not None
        while True:
            try:
                data = self._sock.recv(MAX_MESSAGE)
            except BlockingIOError:
                return
            except OSError as exc:
                self._gone(f"its socket failed: {exc}")
                return
            if not data:
                self._gone(None)
                return
            self._message(json.loads(data))

    def _message(self, message: dict[str, Any]) -> None:
        if "ready" in message:
            if self._ready is not None and not self._ready.done():
                self._ready.set_result(int(message["ready"]))
            return
        process = self._pending.get(message.get("id", -1))
        if process is None:
            return
        if "pid" in message:
            process.pid = int(message["pid"])
            if process._abandoned:
                _terminate(process.pid)
            elif not process.started.done():
                process.started.set_result(process.pid)
        elif "status" in message:
            del self._pending[message["id"]]
            process._ended(int(message["status"]))
        elif "error" in message:
            del self._pending[message["id"]]
            process._lost(f"the warm build worker could not fork the build: {message['error']}")

    def _gone(self, why: str | None) -> None:
        """The worker is gone: forget it now (the next build starts a new one), and tell its
        builds and the log why once known (``why`` None: its exit status, reaped in a thread,
        never on the event loop)."""
        assert self.loop is not None
        was_ready, pid, proc, ready = self.alive, self.pid, self._proc, self._ready
        pending, self._pending = self._pending, {}
        self._close_socket()
        self.loop.create_task(self._tell(why, was_ready, pid, proc, ready, pending))

    async def _tell(self, why: str | None, was_ready: bool, pid: int | None, proc: subprocess.Popen[bytes] | None,
                    ready: asyncio.Future[int] | None, pending: dict[int, WarmProcess]) -> None:
        if why is None:
            if proc is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    await asyncio.to_thread(proc.wait, _REAP_TIMEOUT)
            why = _exit_description(proc)
        if ready is not None and not ready.done():
            ready.set_exception(WorkerLost(why))
            ready.exception()
        if was_ready:
            log.warning("the warm build worker (pid %s) died: %s; %d build(s) in flight run again cold, "
                        "the next build starts a new worker", pid, why, len(pending))
        for process in pending.values():
            process._lost(f"the warm build worker died: {why}")

    def _close_socket(self) -> None:
        if self._sock is not None:
            if self.loop is not None and not self.loop.is_closed():
                self.loop.remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None

    def close(self) -> None:
        """Stop the server (its builds die with it) and forget it."""
        self._close_socket()
        if self._ready is not None and not self._ready.done():
            self._ready.cancel()
        self._ready = None
        for process in self._pending.values():
            process._lost("the warm build worker was closed")
        self._pending = {}
        proc, self._proc = self._proc, None
        if proc is not None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5.0)
        self.pid = None
        self.loop = None


#: How long to wait, in a thread, for a worker whose socket closed to be reapable: its exit
#: status names the cause in the log (a loaded node may take a while to finish the exit).
_REAP_TIMEOUT = 10.0

def _exit_description(proc: subprocess.Popen[bytes] | None) -> str:
    code = None if proc is None else proc.returncode
    if code is None:
        return "it closed its socket"
    return f"it was killed by {signal.Signals(-code).name}" if code < 0 else f"it exited with code {code}"
