"""Starting, finding and stopping step-attempt processes on this machine.

Attempts run detached (their own session), so they outlive the orchestrator that started
them: when an orchestrator crashes, its successor finds each attempt again by the
``STEPFLOW_ATTEMPT_ID`` in the process environment (robust to pid reuse) and waits for the
attempt's record instead of starting it a second time.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

ATTEMPT_ENV = "STEPFLOW_ATTEMPT_ID"


def attempt_id(execution_id: str, step: str, attempt: int) -> str:
    return f"{execution_id}/{step}/{attempt}"


@dataclass(frozen=True)
class ProcessStatus:
    """``running``; or ended with ``exit_code`` (negative: killed by that signal); or ``unknown``
    when the process is gone and was not our child (its exit code is lost)."""

    state: str
    exit_code: int | None = None


class ProcessLauncher:
    """One per orchestrator; keeps the ``Popen`` of its own children so they are reaped."""

    def __init__(self, run_dir: Path, env: Mapping[str, str] | None = None,
                 python: str = sys.executable) -> None:
        self.run_dir = run_dir
        self.env = dict(os.environ if env is None else env)
        self.python = python
        self._children: dict[str, subprocess.Popen[bytes]] = {}

    def log_path(self, execution_id: str, step: str, attempt: int) -> Path:
        return self.run_dir / execution_id / step / f"{attempt}.log"

    def _pid_path(self, execution_id: str, step: str, attempt: int) -> Path:
        return self.run_dir / execution_id / step / f"{attempt}.pid"

    def launch(self, execution_id: str, step: str, attempt: int, arguments: Sequence[str],
               extra_env: Mapping[str, str] | None = None) -> int:
        ident = attempt_id(execution_id, step, attempt)
        log = self.log_path(execution_id, step, attempt)
        log.parent.mkdir(parents=True, exist_ok=True)
        env = {**self.env, **(extra_env or {}), ATTEMPT_ENV: ident}
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                [self.python, "-m", "stepflow.runtime", *arguments, "--attempt", str(attempt)],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env,
                cwd=log.parent, start_new_session=True,
            )
        self._children[ident] = proc
        self._pid_path(execution_id, step, attempt).write_text(str(proc.pid))
        return proc.pid

    def status(self, execution_id: str, step: str, attempt: int) -> ProcessStatus | None:
        """The attempt's process state, or None if it was never started on this machine."""
        ident = attempt_id(execution_id, step, attempt)
        proc = self._children.get(ident)
        if proc is not None:
            code = proc.poll()
            return ProcessStatus("running") if code is None else ProcessStatus("exited", code)
        pid = self._find(execution_id, step, attempt)
        if pid is not None:
            return ProcessStatus("running")
        if self._pid_path(execution_id, step, attempt).exists():
            return ProcessStatus("unknown")
        return None

    def _find(self, execution_id: str, step: str, attempt: int) -> int | None:
        """The live process carrying this attempt's id, checked through /proc."""
        marker = f"{ATTEMPT_ENV}={attempt_id(execution_id, step, attempt)}".encode()
        candidates: list[int] = []
        pid_file = self._pid_path(execution_id, step, attempt)
        if pid_file.exists():
            candidates.append(int(pid_file.read_text() or 0))
        else:  # a crash between spawning and writing the pid file: look everywhere
            candidates.extend(int(p) for p in os.listdir("/proc") if p.isdigit())
        for pid in candidates:
            try:
                environ = Path(f"/proc/{pid}/environ").read_bytes()
                stat = Path(f"/proc/{pid}/stat").read_text()
            except OSError:
                continue
            if marker in environ.split(b"\0") and stat.rsplit(")", 1)[1].split()[0] != "Z":
                return pid
        return None

    def stop(self, execution_id: str, step: str, attempt: int, grace: float = 10.0) -> None:
        """SIGTERM the attempt's process group, SIGKILL it if it outlives ``grace`` seconds."""
        ident = attempt_id(execution_id, step, attempt)
        proc = self._children.get(ident)
        pid = proc.pid if proc is not None else self._find(execution_id, step, attempt)
        if pid is None:
            return
        _signal_group(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            if (proc.poll() is not None) if proc else self._find(execution_id, step, attempt) is None:
                return
            time.sleep(0.05)
        _signal_group(pid, signal.SIGKILL)
        if proc is not None:
            proc.wait(timeout=5)

    def forget(self, execution_id: str, step: str, attempt: int) -> None:
        self._children.pop(attempt_id(execution_id, step, attempt), None)


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
