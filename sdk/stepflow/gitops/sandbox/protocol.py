"""The build protocol: how the sandbox calls ``python -m stepflow.compiler.build`` and reads its answer.

The entrypoint writes ``<out>/result.json`` (``{"ok": true, ...}`` or ``{"ok": false,
"reason", "message", "file", "line"}``) and exits 0 on success, 2 on a user error and 3 on
an internal one. Here that, and how the process ended (time or memory limit, a signal),
becomes one :class:`BuildResult` with a specific reason, a message that says what to fix,
and whether the user is at fault.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from stepflow.gitops.sandbox.jail import ProcessResult, last_error_line, log_tail
from stepflow.gitops.sandbox.settings import Limits

BUILD_MODULE = "stepflow.compiler.build"
#: The entrypoint's exit code for a user error (3 is an internal one; see ``stepflow.compiler.build``).
EXIT_USER_ERROR = 2

BUILD_TIMEOUT = "BuildTimeout"
BUILD_OUT_OF_MEMORY = "BuildOutOfMemory"
BUILD_CRASHED = "BuildCrashed"
INVALID_MODULE_PATH = "InvalidModulePath"
INVALID_REQUIREMENTS_PATH = "InvalidRequirementsPath"
REQUIREMENTS_FAILED = "RequirementsInstallFailed"
INVALID_BUNDLE = "InvalidBundle"


@dataclass(frozen=True)
class BuildRequest:
    checkout: Path
    module: str
    s3_root_uri: str
    attr: str | None = None
    #: Relative to the checkout; None means ``requirements.txt`` when the repository has one.
    requirements: str | None = None
    previous_index: Path | None = None
    #: The commit time, so new artifact folders get a deterministic ``<ts>``.
    source_date_epoch: int | None = None
    limits: Limits = Limits()


@dataclass(frozen=True)
class BuildResult:
    """How a build ended.

    ``user_error`` says who has to act, so a caller can stall (wait for a new commit or
    spec) or retry without knowing any reason by name. It is True only on evidence that the
    user's code or repository is at fault:

    * the module or requirements path is invalid (checked before anything runs);
    * ``pip install`` of the requirements failed or timed out;
    * the build hit its time limit (wall clock or CPU) or its memory limit;
    * the entrypoint exited 2 (a user error) with ``ok: false`` in result.json;
    * the bundle holds something that is not a plain file or folder (the user's code
      planted it).

    Everything else is False, because trying again may work: the entrypoint exited 3 (an
    internal error), the process was killed by a signal that is not one of the limits',
    result.json is missing or unreadable (after exit 0 too), or the process could not be
    started. Problems of the installation itself raise ``SandboxError`` instead.
    """

    ok: bool
    bundle_dir: Path | None
    reason: str | None = None
    message: str | None = None
    file: str | None = None
    line: int | None = None
    log_tail: str = ""
    user_error: bool = False


def entrypoint_args(request: BuildRequest, *, checkout: Path, out: Path,
                    previous_index: Path | None) -> list[str]:
    """The build entrypoint's arguments; ``previous_index`` is the copy the sandbox user may read."""
    args = ["--module", request.module, "--workdir", str(checkout), "--s3-root-uri", request.s3_root_uri,
            "--out", str(out)]
    if request.attr:
        args += ["--attr", request.attr]
    if previous_index is not None:
        args += ["--previous-index", str(previous_index)]
    return args


def entrypoint_argv(python: str, args: list[str]) -> list[str]:
    """The build command: ``python -m stepflow.compiler.build ARGS`` (no user site, no cwd on the path)."""
    return [python, "-s", "-P", "-m", BUILD_MODULE, *args]


def not_started(request: BuildRequest, error: OSError) -> BuildResult:
    """The build process could not be started (out of processes or memory, say)."""
    return BuildResult(False, None, BUILD_CRASHED, (
        f"the build of {request.module!r} could not be started: {error}; check the limits on "
        "processes and memory of where stepflow runs (the operator's pod, or this machine)"), user_error=False)


def interpret(proc: ProcessResult, out: Path, request: BuildRequest) -> BuildResult:
    """Turn how the build ended into a result with a specific reason and a fix."""
    log = log_tail(proc.output)
    limits = request.limits
    if proc.timed_out:
        return BuildResult(False, None, BUILD_TIMEOUT, (
            f"building {request.module!r} did not finish within {limits.timeout:g}s; look for "
            "an endless loop or slow work at import time (move it into a @step), or raise "
            "spec.build.timeout"), log_tail=log, user_error=True)
    if proc.signal == signal.SIGXCPU:
        return BuildResult(False, None, BUILD_TIMEOUT, (
            f"building {request.module!r} used more than {limits.effective_cpu_seconds}s of "
            "CPU; look for an endless loop or heavy work at import time (move it into a @step)"),
            log_tail=log, user_error=True)
    payload = _read_result(out)
    if payload is not None and payload.get("ok") is True and proc.returncode == 0:
        return BuildResult(True, out, log_tail=log)
    message = str(payload.get("message", "")) if payload else ""
    if (payload is None and "MemoryError" in proc.output) or "MemoryError" in message \
            or (payload or {}).get("reason") == "MemoryError":
        limit = _human_bytes(limits.memory_bytes) if limits.memory_bytes else "the machine's"
        return BuildResult(False, None, BUILD_OUT_OF_MEMORY, (
            f"building {request.module!r} ran out of memory (limit {limit}); do not load data "
            "at import time (do it inside a @step), or raise spec.build.memoryLimit"),
            file=_opt_str(payload, "file"), line=_opt_int(payload, "line"), log_tail=log,
            user_error=True)
    if payload is not None and payload.get("ok") is False:
        return BuildResult(False, None, str(payload.get("reason") or BUILD_CRASHED),
                           message or "the build failed without a message",
                           file=_opt_str(payload, "file"), line=_opt_int(payload, "line"),
                           log_tail=log, user_error=proc.returncode == EXIT_USER_ERROR)
    how = (f"was killed by signal {signal.Signals(proc.signal).name}" if proc.signal
           else f"exited with code {proc.returncode}")
    return BuildResult(False, None, BUILD_CRASHED, (
        f"the build of {request.module!r} {how} without a result: "
        f"{last_error_line(proc.output)}; see the build log for the traceback"), log_tail=log,
        user_error=False)


def _read_result(out: Path) -> dict[str, object] | None:
    path = out / "result.json"
    if path.is_symlink() or not path.is_file():
        return None
    try:
        payload = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return payload if isinstance(payload, dict) else None


def _human_bytes(n: int) -> str:
    for unit, size in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= size:
            return f"{n / size:g}{unit}"
    return f"{n}B"


def _opt_str(payload: Mapping[str, object] | None, key: str) -> str | None:
    value = (payload or {}).get(key)
    return str(value) if value is not None else None


def _opt_int(payload: Mapping[str, object] | None, key: str) -> int | None:
    value = (payload or {}).get(key)
    return value if isinstance(value, int) else None
