"""The requirements' virtual environments: one per digest, created once, shared by builds.

A venv is keyed by the build interpreter, the operator's site dirs and the requirements'
bytes, and created once, under a lock, even when several builds (in this process or in
others sharing the work dir) ask for it at once. It sees the operator's site-packages (like
``--system-site-packages``, through a ``.pth`` file so this also works when the operator
itself runs in a virtualenv), so ``stepflow`` is importable. ``pip`` runs in the jail: an
sdist's ``setup.py`` is user code.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
from pathlib import Path

from stepflow.gitops.sandbox.jail import Jail, last_error_line, log_tail
from stepflow.gitops.sandbox.protocol import REQUIREMENTS_FAILED, BuildResult
from stepflow.gitops.sandbox.settings import Limits, SandboxError
from stepflow.locks import aflock


class Venvs:
    """The venvs under ``<work_dir>/venvs``; each is complete once ``.complete`` exists."""

    def __init__(self, jail: Jail) -> None:
        self.jail = jail
        self.settings = jail.settings
        self.root = self.settings.work_dir / "venvs"
        self._locks: dict[str, asyncio.Lock] = {}

    async def environment(self, requirements: Path | None, *,
                          cwd: Path) -> tuple[str, BuildResult | None]:
        """The interpreter of the venv for these requirements, creating it once per digest."""
        digest = self._digest(requirements)
        venv = self.root / digest
        python = str(venv / "bin" / "python")
        if (venv / ".complete").exists():
            return python, None
        lock = self._locks.setdefault(digest, asyncio.Lock())
        async with lock, aflock(venv.with_name(f"{digest}.lock")):
            if (venv / ".complete").exists():
                return python, None
            shutil.rmtree(venv, ignore_errors=True)  # a half-made one from a crash
            failure = await self._create(venv, requirements, cwd)
            if failure:
                shutil.rmtree(venv, ignore_errors=True)
                return python, failure
            (venv / ".complete").touch()
        return python, None

    def _digest(self, requirements: Path | None) -> str:
        h = hashlib.sha256()
        interpreter = os.path.realpath(self.settings.python)
        try:
            h.update(f"{interpreter}:{os.stat(interpreter).st_mtime_ns}\n".encode())
        except OSError as exc:
            raise SandboxError(f"the build interpreter {self.settings.python!r} does not exist; "
                               "set STEPFLOW_BUILD_PYTHON to a Python 3 executable") from exc
        h.update("\n".join(self.settings.site_dirs).encode() + b"\n")
        h.update(requirements.read_bytes() if requirements else b"")
        return h.hexdigest()[:32]

    async def _create(self, venv: Path, requirements: Path | None,
                      cwd: Path) -> BuildResult | None:
        created = await asyncio.create_subprocess_exec(
            self.settings.python, "-m", "venv", "--without-pip", str(venv),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        out, _ = await created.communicate()
        if created.returncode != 0:
            raise SandboxError(f"`{self.settings.python} -m venv` failed: "
                               f"{out.decode(errors='replace')[-500:]}")
        purelib = next((venv / "lib").glob("python*/site-packages"))
        # Like --system-site-packages, but for the operator's site dirs even when it runs in
        # a venv itself; addsitedir also runs their .pth files (editable installs).
        lines = "".join(f"import site; site.addsitedir({d!r})\n" for d in self.settings.site_dirs)
        (purelib / "zz_stepflow_operator_site.pth").write_text(lines)
        python = str(venv / "bin" / "python")
        await self._check_runnable(python)
        if requirements is None:
            return None
        self.jail.hand_over(venv)
        try:
            proc = await self.jail.run(
                [python, "-s", "-m", "pip", "install", "--no-input", "--disable-pip-version-check",
                 "--no-warn-script-location", "-r", str(requirements)],
                cwd=cwd, limits=self.settings.pip_limits)
        finally:
            self.jail.take_back(venv)
        if proc.returncode == 0:
            return None
        rel = requirements.relative_to(cwd) if requirements.is_relative_to(cwd) else requirements
        what = (f"did not finish within {self.settings.pip_limits.timeout:g}s"
                if proc.timed_out else f"failed (exit code {proc.returncode})")
        return BuildResult(
            False, None, REQUIREMENTS_FAILED,
            f"`pip install -r {rel}` {what}: {last_error_line(proc.output)}; fix the "
            f"requirement named there (a version that exists, a reachable index) in {rel}",
            file=str(rel), log_tail=log_tail(proc.output), user_error=True)

    async def _check_runnable(self, python: str) -> None:
        """Fail early, with a fix, when the sandbox user cannot execute the interpreter."""
        proc = await self.jail.run([python, "-s", "-c", "import stepflow"], cwd=Path("/"),
                                   limits=Limits(timeout=60.0, memory_bytes=None))
        if proc.returncode != 0:
            raise SandboxError(
                f"the build interpreter {self.settings.python!r} cannot import stepflow as "
                f"{_who(self.settings.uid)}: {last_error_line(proc.output)}; set "
                "STEPFLOW_BUILD_PYTHON to a Python every user can execute, with stepflow "
                "installed in a world-readable location")


def _who(uid: int | None) -> str:
    return "this user" if uid is None else f"uid {uid}"
