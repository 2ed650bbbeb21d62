"""What an installation configures about the sandbox, and the error when it cannot work."""

from __future__ import annotations

import os
import site
import sys
from dataclasses import dataclass, field
from pathlib import Path

from stepflow.confine import NOBODY
from stepflow.errors import StepflowError

__all__ = ["NOBODY", "Limits", "SandboxError", "SandboxSettings"]


class SandboxError(StepflowError):
    """The sandbox itself cannot work: an operator installation problem, not the user's."""

    reason = "SandboxMisconfigured"


@dataclass(frozen=True)
class Limits:
    """Per-build limits, from ``spec.build``."""

    timeout: float = 300.0
    memory_bytes: int | None = 2 * 1024**3
    cpu_seconds: int | None = None  # default: the wall-clock timeout

    @property
    def effective_cpu_seconds(self) -> int:
        return self.cpu_seconds or max(int(self.timeout) + 1, 1)


@dataclass(frozen=True)
class SandboxSettings:
    """Operator-wide configuration of the sandbox."""

    work_dir: Path
    #: The interpreter builds run with. Every user must be able to execute it (a pyenv
    #: Python under /root is not); ``STEPFLOW_BUILD_PYTHON`` overrides the default.
    python: str = field(default_factory=lambda: os.environ.get("STEPFLOW_BUILD_PYTHON")
                        or sys.executable)
    #: Made importable in every build (stepflow and its dependencies live there).
    site_dirs: tuple[str, ...] = field(default_factory=lambda: tuple(site.getsitepackages()))
    uid: int | None = field(default_factory=lambda: NOBODY if os.geteuid() == 0 else None)
    gid: int | None = field(default_factory=lambda: NOBODY if os.geteuid() == 0 else None)
    output_limit: int = 256 * 1024
    #: ``stepflow.confine``'s mode: "namespaces", "reaper", or None to probe what works.
    confinement: str | None = None
    #: The size of each private tmpfs (/tmp, /var/tmp, /dev/shm) in namespaces mode.
    tmpfs_bytes: int = 512 * 1024**2
    pip_limits: Limits = Limits(timeout=900.0, memory_bytes=4 * 1024**3)
    #: Builds without requirements fork from a warm worker (``sandbox.forkserver``) instead
    #: of starting an interpreter each; ``STEPFLOW_BUILD_WARM=0`` turns it off.
    warm: bool = field(default_factory=lambda: os.environ.get("STEPFLOW_BUILD_WARM", "1").lower()
                       not in ("0", "false", "no", "off"))
