"""Starting, finding and stopping step-attempt processes on this machine.

Attempts run detached (their own session), so they outlive the orchestrator that started
them. Each attempt holds an exclusive ``flock`` on its pid file for as long as it lives
(the lock is taken before the process exists and inherited by it), so any orchestrator,
including the successor of one that crashed, tells a live attempt from a finished one by
probing the lock: robust to pid reuse, and no window in which a started attempt looks
unstarted and is launched a second time.

Starting a Python interpreter and importing the runtime (boto3 alone is ~170 ms of CPU)
costs far more than a trivial step, so attempts are forked from a *fork server*: a child
of the orchestrator that has imported the runtime once and forks a process per attempt,
which then runs :func:`stepflow.runtime.invoke.main` in its own session with the attempt's
environment, working directory and log. When the fork server cannot be used, an attempt is
an ordinary ``python -m stepflow.runtime`` process, with the same lock and the same files.

The integrity key never travels in an environment block: the launcher strips its variables
from the environment it passes on and hands the key over on a pipe
(``stepflow.runtime.key``), to the fork server once or to each exec'd attempt. The runtime
runs the step's own code in a separate process that never has it
(``stepflow.runtime.isolation``).
"""

from __future__ import annotations

import fcntl
import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from stepflow.runtime.isolation import STEP_ENVIRONMENT_ENV
from stepflow.runtime.key import configured_key, key_pipe, without_key

ATTEMPT_ENV = "STEPFLOW_ATTEMPT_ID"
_FROM_ENV: Any = object()


def attempt_id(execution_id: str, step: str, attempt: int) -> str:
    return f"{execution_id}/{step}/{attempt}"


@dataclass(frozen=True)
class ProcessStatus:
    """``running``; or ended with ``exit_code`` (negative: killed by that signal); or ``unknown``
    when the process is gone and its exit code was not recorded. A launcher that knows why an
    attempt ended without writing its record (a pod's image could not be pulled, ...) says so
    in ``reason`` and whose failure it is in ``kind``."""

    state: str
    exit_code: int | None = None
    reason: str | None = None
    kind: str = "Infrastructure"


def _held(lock: Path) -> bool:
    """Whether a live process holds the attempt's lock."""
    try:
        fd = os.open(lock, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing drops our probe's shared lock too
    return False


def _take(lock: Path) -> int | None:
    """Open and exclusively lock an attempt's pid file; None if a live process holds it."""
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        return None
    return int(text) if text.lstrip("-").isdigit() else None


class ProcessLauncher:
    """One per orchestrator; owns its fork server and reaps its own ``Popen`` children.

    ``integrity_key``: by default the one ``env`` configures (``STEPFLOW_INTEGRITY_KEY``,
    ``..._FILE``, the config file); either way it reaches attempts on a pipe only.
    """

    def __init__(self, run_dir: Path, env: Mapping[str, str] | None = None,
                 python: str = sys.executable, fork_server: bool = True,
                 integrity_key: bytes | None = _FROM_ENV) -> None:
        self.run_dir = run_dir
        env = dict(os.environ if env is None else env)
        self.key: bytes | None = configured_key(env) if integrity_key is _FROM_ENV else integrity_key
        self.env = without_key(env)
        self.python = python
        self._children: dict[str, subprocess.Popen[bytes]] = {}
        self._forked: dict[str, int] = {}
        self._server: _ForkServer | None = None
        self._use_server = fork_server

    def log_path(self, execution_id: str, step: str, attempt: int) -> Path:
        return self.run_dir / execution_id / step / f"{attempt}.log"

    def _pid_path(self, execution_id: str, step: str, attempt: int) -> Path:
        return self.run_dir / execution_id / step / f"{attempt}.pid"

    def _exit_path(self, execution_id: str, step: str, attempt: int) -> Path:
        return self.run_dir / execution_id / step / f"{attempt}.exit"

    def launch(self, execution_id: str, step: str, attempt: int, arguments: Sequence[str],
               environment: Mapping[str, str] | None = None) -> int:
        """Start an attempt; ``environment`` is the step's declared variables (its user
        code sees them, and not the launcher's environment when it runs as another user)."""
        ident = attempt_id(execution_id, step, attempt)
        log = self.log_path(execution_id, step, attempt)
        log.parent.mkdir(parents=True, exist_ok=True)
        lock = self._pid_path(execution_id, step, attempt)
        env = {**self.env, STEP_ENVIRONMENT_ENV: json.dumps(dict(environment or {})),
               ATTEMPT_ENV: ident}
        argv = [*arguments, "--attempt", str(attempt)]
        server = self._fork_server()
        if server is not None:
            pid = server.spawn(argv=argv, env=env, cwd=str(log.parent), log=str(log), lock=str(lock),
                               exit=str(self._exit_path(execution_id, step, attempt)))
            if pid is not None:
                self._forked[ident] = pid
                return pid
            self._server = None
        return self._popen(ident, argv, env, log, lock)

    def _popen(self, ident: str, argv: list[str], env: dict[str, str], log: Path, lock: Path) -> int:
        fd = _take(lock)
        if fd is None:  # already running: launched by a predecessor
            return _read_int(lock) or 0
        key_fd, key_env = key_pipe(self.key)
        try:
            with open(log, "ab") as out:
                proc = subprocess.Popen(
                    [self.python, "-m", "stepflow.runtime", *argv], stdin=subprocess.DEVNULL, stdout=out,
                    stderr=subprocess.STDOUT, env={**env, **key_env}, cwd=log.parent,
                    start_new_session=True, pass_fds=(fd,) if key_fd is None else (fd, key_fd))
            os.ftruncate(fd, 0)
            os.write(fd, str(proc.pid).encode())
        finally:
            os.close(fd)  # the child keeps the lock through its inherited descriptor
            if key_fd is not None:
                os.close(key_fd)
        self._children[ident] = proc
        return proc.pid

    def _fork_server(self) -> _ForkServer | None:
        if self._use_server and self._server is None:
            try:
                self._server = _ForkServer(self.python, self.env, self.key,
                                           self.run_dir / "forkserver.log")
            except OSError:
                self._use_server = False
        return self._server

    def status(self, execution_id: str, step: str, attempt: int) -> ProcessStatus | None:
        """The attempt's process state, or None if it was never started on this machine."""
        ident = attempt_id(execution_id, step, attempt)
        lock = self._pid_path(execution_id, step, attempt)
        if _held(lock):
            return ProcessStatus("running")
        proc = self._children.get(ident)
        if proc is not None:
            return ProcessStatus("exited", proc.wait())
        if not lock.exists() or _read_int(lock) is None:
            return None  # no process ever ran under this lock
        exit_file = self._exit_path(execution_id, step, attempt)
        if ident in self._forked and self._server is not None:
            deadline = time.monotonic() + 2.0  # our fork server reaps it within a tick
            while not exit_file.exists() and time.monotonic() < deadline and self._server.alive():
                time.sleep(0.005)
        code = _read_int(exit_file)
        return ProcessStatus("unknown") if code is None else ProcessStatus("exited", code)

    def stop(self, execution_id: str, step: str, attempt: int, grace: float = 10.0) -> None:
        """SIGTERM the attempt's process group, SIGKILL it if it outlives ``grace`` seconds."""
        lock = self._pid_path(execution_id, step, attempt)
        pid = _read_int(lock)
        if pid is None or not _held(lock):
            return
        _signal_group(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            if not _held(lock):
                return
            time.sleep(0.05)
        _signal_group(pid, signal.SIGKILL)
        proc = self._children.get(attempt_id(execution_id, step, attempt))
        if proc is not None:
            proc.wait(timeout=5)

    def forget(self, execution_id: str, step: str, attempt: int) -> None:
        ident = attempt_id(execution_id, step, attempt)
        self._children.pop(ident, None)
        self._forked.pop(ident, None)

    def wait(self, timeout: float) -> None:
        """Sleep up to ``timeout`` seconds, waking as soon as one of our attempts exits.

        Step processes are short; noticing their end at once rather than at the next poll
        is most of what separates a step's cost from its process's own run time.
        """
        if timeout <= 0:
            return
        pids = [p.pid for p in self._children.values() if p.returncode is None] + list(self._forked.values())
        fds: list[int] = []
        try:
            for pid in pids:
                try:
                    fds.append(os.pidfd_open(pid))
                except ProcessLookupError:
                    return  # already gone
                except (AttributeError, OSError):  # no pidfd (old kernel, not Linux): plain sleep
                    break
            else:
                if fds:
                    select.select(fds, [], [], timeout)
                    return
            time.sleep(timeout)
        finally:
            for fd in fds:
                os.close(fd)

    def close(self) -> None:
        """Let the fork server go; attempts it started keep running."""
        if self._server is not None:
            self._server.close()
            self._server = None


class _ForkServer:
    """The orchestrator's side of the fork server: one JSON line per request and reply."""

    def __init__(self, python: str, env: Mapping[str, str], key: bytes | None, log: Path) -> None:
        log.parent.mkdir(parents=True, exist_ok=True)
        key_fd, key_env = key_pipe(key)
        try:
            with open(log, "ab") as err:
                self.proc = subprocess.Popen(
                    [python, "-m", "stepflow.backends.local.launcher", "--serve"], stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE, stderr=err, env={**env, **key_env}, cwd="/",
                    pass_fds=() if key_fd is None else (key_fd,))
        finally:
            if key_fd is not None:
                os.close(key_fd)
        self._ready = False

    def alive(self) -> bool:
        return self.proc.poll() is None

    def spawn(self, **request: Any) -> int | None:
        """The attempt's pid, or None if the server is gone (the caller falls back to exec)."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        try:
            if not self._ready:
                self._ready = self.proc.stdout.readline().strip() == b"ready"
                if not self._ready:
                    raise BrokenPipeError("fork server did not start")
            self.proc.stdin.write(json.dumps(request).encode() + b"\n")
            self.proc.stdin.flush()
            reply = json.loads(self.proc.stdout.readline() or b"{}")
        except (OSError, ValueError):
            self.close()
            return None
        if "pid" not in reply:
            self.close()
            return None
        return int(reply["pid"])

    def close(self) -> None:
        try:
            if self.proc.stdin is not None:
                self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


# -- the fork server process --------------------------------------------------------------


def _die_with_parent() -> None:
    """PR_SET_PDEATHSIG: an orphaned fork server would hold memory for nothing."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)
    except (OSError, AttributeError):
        pass


def _serve() -> int:
    import stepflow.runtime.invoke  # noqa: F401 - the point: imported once, shared by every fork
    from stepflow import confine
    from stepflow.runtime.isolation import user_python
    from stepflow.runtime.key import read_key

    _die_with_parent()
    read_key()  # the pipe is read and closed now; every attempt forked from here has the key
    confine.best_mode(user_python())  # probed once, not per attempt
    replies = os.fdopen(os.dup(1), "wb", buffering=0)
    requests: IO[bytes] = sys.stdin.buffer
    exits: dict[int, str] = {}
    replies.write(b"ready\n")
    while True:
        readable, _, _ = select.select([requests], [], [], 0.02)
        _reap(exits)
        if not readable:
            continue
        line = requests.readline()
        if not line:
            return 0
        request = json.loads(line)
        lock = _take(Path(request["lock"]))
        if lock is None:
            replies.write(json.dumps({"pid": _read_int(Path(request["lock"])) or 0}).encode() + b"\n")
            continue
        pid = os.fork()
        if pid == 0:
            _child(request, lock, replies)  # never returns
        os.close(lock)
        exits[pid] = request["exit"]
        replies.write(json.dumps({"pid": pid}).encode() + b"\n")


def _reap(exits: dict[int, str]) -> None:
    while exits:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
        path = exits.pop(pid, None)
        if path is not None:
            Path(path).write_text(str(code))


def _child(request: dict[str, Any], lock: int, replies: IO[bytes]) -> None:
    """In the forked attempt: become what ``python -m stepflow.runtime ARGS`` would be."""
    code = 3
    try:
        os.setsid()
        replies.close()
        os.ftruncate(lock, 0)
        os.write(lock, str(os.getpid()).encode())
        os.set_inheritable(lock, True)  # kept across the runtime's re-exec into a dependency venv
        log = os.open(request["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(log)
        os.close(devnull)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        sys.argv = [sys.argv[0], *request["argv"]]
        from stepflow.runtime.invoke import main

        code = main(request["argv"])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:  # noqa: BLE001 - whatever happens, this process must not return to the server loop
        import traceback

        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
            import logging

            logging.shutdown()
        finally:
            os._exit(code)


if __name__ == "__main__" and sys.argv[1:] == ["--serve"]:
    sys.exit(_serve())
