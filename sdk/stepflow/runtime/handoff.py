"""The folder the runtime's two parts share for one attempt (``stepflow.runtime.isolation``).

::

    <attempt>/
      invocation.json     what the user part runs (written by the trusted part)
      workspace/          the step's working directory: workspace.zip, dependency files
      inputs/             verified payloads: function.pkl, arguments.pkl, upstream-<n>.pkl
      home/, tmp/         HOME and TMPDIR of the user part
      outputs/            written by the user part: result.pkl + result.json (its
                          metadata.json), results.json, exception.pkl + exception.json,
                          outcome.json ({"code", "reason"}); in a pod also exit.json, the
                          user part's exit status, written by the step container
      started             when the trusted part began the attempt (a pod's stage phase)
      running.lock        in a pod: held by the step container while it lives

The trusted part reads ``outputs/`` as files the user part may have replaced by anything,
symlinks included: :func:`read_output` opens them without following links.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

INVOCATION = "invocation.json"
WORKSPACE, INPUTS, OUTPUTS, HOME, TMP = "workspace", "inputs", "outputs", "home", "tmp"
FUNCTION, ARGUMENTS = "function.pkl", "arguments.pkl"
RESULT, RESULT_METADATA, RESULT_DOCUMENT = "result.pkl", "result.json", "results.json"
EXCEPTION, EXCEPTION_METADATA = "exception.pkl", "exception.json"
OUTCOME = "outcome.json"
EXIT, STARTED, RUNNING = "exit.json", "started", "running.lock"
#: Where the user part keeps its dependency venvs (shared by the steps of one uid).
STEP_ENVS_ENV = "STEPFLOW_STEP_ENVS"


@dataclass(frozen=True)
class Invocation:
    """What the user part needs to know; paths are relative to the attempt folder."""

    step_name: str
    dependency_file: str | None
    property_references: dict[str, str]
    serialize_output_to_json: bool
    #: major.minor of the Python that compiled the pipeline: the user part's must match.
    client_python_version: str | None = None
    #: Upstream result URI -> its verified payload under ``inputs/``.
    upstream: dict[str, str] = field(default_factory=dict)

    def write(self, attempt: Path) -> None:
        (attempt / INVOCATION).write_text(json.dumps(asdict(self)))

    @classmethod
    def read(cls, attempt: Path) -> Invocation:
        return cls(**json.loads((attempt / INVOCATION).read_text()))


def make(attempt: Path) -> None:
    for name in (WORKSPACE, INPUTS, OUTPUTS, HOME, TMP):
        (attempt / name).mkdir(mode=0o700)


def read_output(attempt: Path, name: str) -> bytes | None:
    """An output file's bytes, or None when it is absent or not a regular file.

    Opened relative to ``outputs/`` with ``O_NOFOLLOW`` at both steps, so a symlink the
    user part planted (to the key file, say) is never followed by the trusted part.
    """
    try:
        folder = os.open(attempt / OUTPUTS, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=folder)
    except OSError:
        return None
    finally:
        os.close(folder)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        with os.fdopen(fd, "rb") as f:
            fd = -1
            return f.read()
    finally:
        if fd >= 0:
            os.close(fd)


def write_output(attempt: Path, name: str, data: bytes) -> None:
    (attempt / OUTPUTS / name).write_bytes(data)


def write_outcome(attempt: Path, code: int, reason: str | None) -> None:
    write_output(attempt, OUTCOME, json.dumps({"code": code, "reason": reason}).encode())


def read_outcome(attempt: Path) -> dict[str, Any] | None:
    raw = read_output(attempt, OUTCOME)
    try:
        value = json.loads(raw) if raw else None
    except ValueError:
        return None
    if isinstance(value, dict) and isinstance(value.get("code"), int):
        return value
    return None
