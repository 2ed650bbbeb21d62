"""Preparing a step's Python environment before its function runs, in the user part.

Pre-execution commands and ``pip install`` are the user's code, so they run in the user part
(``stepflow.runtime.isolation``); the trusted part checks the Python version and unpacks the
workspace (``stepflow.runtime.staging``). Mirrors SageMaker's bootstrap
(docs/SAGEMAKER-COMPATIBILITY.md, "Preparing the environment") with two differences that
matter to users:
declared dependencies go into an isolated virtual environment cached by the dependency
file's digest (never into the runtime's own environment, so one step cannot break the
next), and every failure here is an *environment* error with the tail of the failing
command's output, not a stack trace from deep inside the bootstrap.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

from stepflow import layout
from stepflow.errors import StepflowError
from stepflow.locks import flock

_OUTPUT_TAIL = 2000


class EnvironmentError_(StepflowError):
    """The step's environment could not be prepared; user code did not run."""

    reason = "RuntimeEnvironmentError"


def check_python_version(client_version: str | None) -> None:
    """Pickles are only portable between equal major.minor versions: fail before loading."""
    if not client_version:
        return
    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    if client_version != here:
        raise EnvironmentError_(
            f"Python version found where the step runs is '{here}', which does not match "
            f"Python '{client_version}' that compiled the pipeline. Run steps with Python "
            f"{client_version} (image or interpreter), or compile with Python {here}."
        )


def run_pre_exec(workspace: Path) -> None:
    script = workspace / layout.PRE_EXEC_SCRIPT
    if not script.exists():
        return
    proc = subprocess.run(["/bin/bash", "-eu", str(script)], cwd=workspace,
                          capture_output=True, text=True)
    sys.stdout.write(proc.stdout)
    sys.stderr.write(proc.stderr)
    if proc.returncode != 0:
        raise EnvironmentError_(
            f"The step's pre-execution commands failed with exit code {proc.returncode}: "
            f"{_tail(proc.stderr or proc.stdout)}. Fix pre_execution_commands/"
            "pre_execution_script of the step."
        )


def dependency_python(workspace: Path, dependency_file: str | None, envs: Path) -> str | None:
    """Return the interpreter of a venv holding the declared dependencies, or None if none.

    Venvs live under ``envs``, one per digest of the requirements and the Python version,
    shared by the steps that run as one user. The venv sees the runtime's own packages
    (stepflow, cloudpickle) through a ``.pth`` file placed after its own site-packages, so
    user pins win over ours.
    """
    if not dependency_file:
        return None
    path = workspace / dependency_file
    if not path.exists():
        raise EnvironmentError_(
            f"The dependency file {dependency_file!r} named by the step is not in its "
            "pre_exec_script_and_dependencies channel. Recompile and republish the pipeline."
        )
    if path.suffix not in (".txt",):
        raise EnvironmentError_(
            f"Dependency file {dependency_file!r}: only pip requirements files (.txt) are "
            "supported by the stepflow runtime; conda environment files are not."
        )
    requirements = path.read_bytes()
    if not [l for l in requirements.decode().splitlines() if l.strip() and not l.strip().startswith("#")]:
        return None
    digest = hashlib.sha256(requirements + sys.version.encode()).hexdigest()[:20]
    env_dir = envs / digest
    python = env_dir / "bin" / "python"
    env_dir.parent.mkdir(parents=True, exist_ok=True)
    with flock(env_dir.parent / f"{digest}.lock"):
        if (env_dir / ".ready").exists():
            _say(f"dependencies from {dependency_file}: reusing {env_dir}")
            return str(python)
        shutil.rmtree(env_dir, ignore_errors=True)
        _say(f"dependencies from {dependency_file}: installing into {env_dir} (kept for later runs)")
        _run([sys.executable, "-m", "venv", str(env_dir)], "create a virtual environment")
        site = Path(sysconfig.get_path("purelib", vars={"base": str(env_dir), "platbase": str(env_dir)}))
        site.mkdir(parents=True, exist_ok=True)
        (site / "zz_stepflow_runtime.pth").write_text(_inherit_paths())
        _run([str(python), "-m", "pip", "install", "--disable-pip-version-check", "--progress-bar", "off",
              "-r", str(path)], f"install the step's dependencies from {dependency_file}")
        (env_dir / ".ready").write_text(digest)
        _say(f"dependencies from {dependency_file}: installed")
    return str(python)


def _say(message: str) -> None:
    print(f"stepflow: {message}", file=sys.stderr, flush=True)


def _inherit_paths() -> str:
    """``.pth`` lines that make the runtime's own packages importable, after the venv's.

    Site directories go through ``site.addsitedir`` so their own ``.pth`` files (editable
    installs) are honoured too.
    """
    lines = []
    for entry in sys.path:
        if not entry or not os.path.isdir(entry):
            continue
        if entry.endswith("site-packages"):
            lines.append(f"import site; site.addsitedir({entry!r})")
        else:
            lines.append(entry)
    return "\n".join(lines) + "\n"


def _run(cmd: list[str], what: str) -> None:
    """Run ``cmd`` with its output going on into the step's log as it comes (a long pip
    install is visible while it runs), keeping the end of it for the failure reason."""
    sys.stderr.flush()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    tail: list[str] = []
    for line in proc.stdout:
        sys.stderr.write(line)
        sys.stderr.flush()
        tail = [*tail[-20:], line]
    if proc.wait() != 0:
        raise EnvironmentError_(f"Could not {what} (exit code {proc.returncode}): {_tail(''.join(tail))}")


def _tail(text: str) -> str:
    text = " ".join(text.strip().split())
    return text if len(text) <= _OUTPUT_TAIL else "..." + text[-_OUTPUT_TAIL:]
