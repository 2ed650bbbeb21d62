"""Server processes for tests: own process group, log file, guaranteed teardown.

Every server is started with ``start_new_session=True`` (its own process group, so a stop
reaches its children too) and, where util-linux's ``setpriv`` exists, with a parent-death
signal, so even a SIGKILLed pytest leaves no orphan behind. Live servers are stopped by the
fixtures' finalizers, by ``atexit`` and by the SIGTERM/SIGHUP handlers the plugin installs.
"""

from __future__ import annotations

import atexit
import contextlib
import http.client
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

_SETPRIV = shutil.which("setpriv")
_LIVE: set[ServerProcess] = set()
_LIVE_LOCK = threading.Lock()
_HANDED_PORTS: set[int] = set()


class ServerFailed(RuntimeError):
    """A server did not start, or died; the message carries the tail of its log."""


class WaitTimeout(TimeoutError):
    """wait_for's deadline passed before the condition held."""


def wait_for(
    predicate: Callable[[], T],
    timeout: float = 10.0,
    interval: float = 0.05,
    message: str | None = None,
    *,
    ignore: type[BaseException] | tuple[type[BaseException], ...] = (),
) -> T:
    """Call ``predicate`` until it returns something truthy, and return that.

    Deadline-based: raises ``WaitTimeout`` (with ``message``) once ``timeout`` seconds have
    passed. Exceptions listed in ``ignore`` count as "not yet" (the last one is reported on
    timeout); any other exception propagates at once.
    """
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while True:
        try:
            result = predicate()
        except ignore as exc:  # noqa: PERF203 - retried by design
            last_exc = exc
            result = None  # type: ignore[assignment]
        if result:
            return result
        if time.monotonic() >= deadline:
            what = message or getattr(predicate, "__name__", "condition")
            detail = f" (last error: {last_exc!r})" if last_exc is not None else ""
            raise WaitTimeout(f"timed out after {timeout:.1f}s waiting for: {what}{detail}")
        time.sleep(interval)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago and not handed out before."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _HANDED_PORTS:
            _HANDED_PORTS.add(port)
            return port
    raise RuntimeError("could not find a free port")


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0


class ServerProcess:
    """One server binary: started in its own process group with output to ``log_path``."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_path: Path,
        *,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.argv = [str(a) for a in argv]
        self.log_path = Path(log_path)
        self.env = env
        self.cwd = cwd
        self.proc: subprocess.Popen[bytes] | None = None
        self._log_file = None

    def __repr__(self) -> str:
        pid = self.proc.pid if self.proc else None
        return f"<ServerProcess {self.name} pid={pid} log={self.log_path}>"

    def start(self) -> ServerProcess:
        argv = self.argv
        if _SETPRIV:
            argv = [_SETPRIV, "--pdeathsig", "KILL", "--", *argv]
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log_file = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self._log_file.write(f"$ {' '.join(self.argv)}\n".encode())
        self._log_file.flush()
        with _LIVE_LOCK:
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=self._log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=self.env,
                cwd=self.cwd,
            )
            _LIVE.add(self)
        return self

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def ensure_running(self) -> None:
        """Raise ServerFailed (with the log's tail) when the process has exited."""
        if self.proc is None:
            raise ServerFailed(f"{self.name} was never started")
        rc = self.proc.poll()
        if rc is not None:
            raise ServerFailed(
                f"{self.name} exited with code {rc}; log {self.log_path}, last lines:\n"
                + self.tail(30)
            )

    @contextlib.contextmanager
    def frozen(self) -> Iterator[None]:
        """SIGSTOP the server's process group for the block, SIGCONT after: it keeps accepting
        connections (the kernel's backlog) and never answers, like a hung server."""
        if self.proc is None or self.proc.poll() is not None:
            raise ServerFailed(f"{self.name} is not running; it cannot be frozen")
        _killpg(self.proc.pid, signal.SIGSTOP)
        try:
            yield
        finally:
            _killpg(self.proc.pid, signal.SIGCONT)

    def stop(self, timeout: float = 5.0) -> None:
        proc = self.proc
        if proc is None:
            return
        try:
            if proc.poll() is None:
                _killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    _killpg(proc.pid, signal.SIGKILL)
                    proc.wait(timeout)
            # the leader is gone; make sure nothing else of its group survives
            _killpg(proc.pid, signal.SIGKILL)
        finally:
            with _LIVE_LOCK:
                _LIVE.discard(self)
            if self._log_file is not None:
                self._log_file.close()
                self._log_file = None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def tail(self, n: int = 40) -> str:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(0, os.SEEK_END)
                size = f.tell()
                f.seek(max(0, size - 256 * 1024))
                data = f.read()
        except FileNotFoundError:
            return "(no log)"
        lines = data.decode(errors="replace").splitlines()
        return "\n".join(lines[-n:])

    def port_conflict(self) -> bool:
        return "address already in use" in self.log_text().lower()


def start_http_server(
    name: str,
    argv: Callable[[int], Sequence[str]],
    log_path: Path,
    *,
    host: str = "127.0.0.1",
    health_path: str,
    env: dict[str, str] | None = None,
    timeout: float = 20.0,
    attempts: int = 3,
) -> tuple[ServerProcess, int]:
    """Start an HTTP server on a free port of ``host`` and wait until ``GET health_path``
    answers 200; returns the process and its port.

    A port taken between :func:`free_port` and the server's bind (another session's server)
    is retried on a new port, up to ``attempts``; any other failure raises ``ServerFailed``
    at once, with the tail of the server's log.
    """
    for attempt in range(1, attempts + 1):
        port = free_port()
        process = ServerProcess(name, argv(port), log_path, env=env).start()

        def healthy(process: ServerProcess = process, port: int = port) -> bool:
            process.ensure_running()
            conn = http.client.HTTPConnection(host, port, timeout=1)
            try:
                conn.request("GET", health_path)
                return conn.getresponse().status == 200
            finally:
                conn.close()

        try:
            wait_for(healthy, timeout, 0.02, f"{name} http://{host}:{port}{health_path}",
                     ignore=(OSError, http.client.HTTPException))
            return process, port
        except (ServerFailed, TimeoutError) as exc:
            conflict = process.port_conflict()
            tail = process.tail(30)
            process.stop()
            if not conflict or attempt == attempts:
                raise ServerFailed(f"{name} did not start: {exc}\n{tail}") from exc
    raise AssertionError("unreachable")


def _killpg(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def live_servers() -> list[ServerProcess]:
    with _LIVE_LOCK:
        return list(_LIVE)


def stop_all(timeout: float = 3.0) -> None:
    """Stop every live server (atexit, signals, and the end of the session)."""
    for server in live_servers():
        try:
            server.stop(timeout)
        except Exception:  # noqa: BLE001 - best effort during shutdown
            pass


atexit.register(stop_all)

_HANDLERS_INSTALLED = False


def install_signal_handlers() -> None:
    """On SIGTERM/SIGHUP stop every server, then let the previous handler act."""
    global _HANDLERS_INSTALLED
    if _HANDLERS_INSTALLED or threading.current_thread() is not threading.main_thread():
        return
    _HANDLERS_INSTALLED = True
    for signum in (signal.SIGTERM, signal.SIGHUP):
        previous = signal.getsignal(signum)

        def handler(num, frame, previous=previous):  # noqa: ANN001
            stop_all(timeout=2.0)
            if callable(previous):
                previous(num, frame)
            elif previous == signal.SIG_IGN:
                return
            else:
                signal.signal(num, signal.SIG_DFL)
                os.kill(os.getpid(), num)

        signal.signal(signum, handler)
