"""One build, from a checkout to a bundle folder: paths, venv, entrypoint, result, bundle check."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

from stepflow.gitops.sandbox.jail import Jail, scrubbed_environment
from stepflow.gitops.sandbox.paths import check_bundle, check_module_path, requirements_file
from stepflow.gitops.sandbox.protocol import (
    INVALID_BUNDLE,
    INVALID_MODULE_PATH,
    INVALID_REQUIREMENTS_PATH,
    BuildRequest,
    BuildResult,
    entrypoint_args,
    entrypoint_argv,
    interpret,
    not_started,
)
from stepflow.gitops.sandbox.settings import SandboxSettings
from stepflow.gitops.sandbox.venvs import Venvs
from stepflow.gitops.sandbox.warm import WarmWorker, WorkerLost

log = logging.getLogger(__name__)


class Sandbox:
    """Runs builds in the jail, with the repository's requirements installed in a venv.

    ``<work_dir>`` holds ``runs/`` (each process's private HOME and TMPDIR), ``builds/``
    (bundle folders) and ``venvs/``.

    Builds without requirements (the venv no user code ever wrote to) are forked from a warm
    worker when ``settings.warm`` (see :mod:`.forkserver`); the others, and every build
    while the worker cannot start, run a fresh interpreter.
    """

    def __init__(self, settings: SandboxSettings) -> None:
        self.settings = settings
        self.jail = Jail(settings)
        self.venvs = Venvs(self.jail)
        self.worker: WarmWorker | None = None
        for sub, mode in (("", 0o711), ("runs", 0o711), ("builds", 0o711), ("venvs", 0o755)):
            path = settings.work_dir / sub
            path.mkdir(parents=True, exist_ok=True)
            os.chmod(path, mode)
        self.jail.check_reachable(settings.work_dir, "the sandbox work_dir")

    async def build(self, request: BuildRequest) -> BuildResult:
        """Compile ``request.module`` from the checkout into a fresh bundle folder.

        Failures come back as a ``BuildResult`` with a reason and ``user_error`` (see
        there); problems of the operator's installation raise ``SandboxError``. The bundle
        folder belongs to the caller, who removes it (``shutil.rmtree``) when published.
        """
        checkout = request.checkout.resolve()
        self.jail.check_reachable(checkout, "the checkout")
        problem = check_module_path(checkout, request.module)
        if problem:
            return BuildResult(False, None, INVALID_MODULE_PATH, problem, user_error=True)
        requirements, problem = requirements_file(checkout, request.requirements)
        if problem:
            return BuildResult(False, None, INVALID_REQUIREMENTS_PATH, problem, user_error=True)
        self.jail.hand_over(checkout)
        python, failure = await self.venvs.environment(requirements, cwd=checkout)
        if failure:
            return failure
        out = Path(tempfile.mkdtemp(prefix="bundle-", dir=self.settings.work_dir / "builds"))
        self.jail.hand_over(out)
        index: Path | None = None
        if request.previous_index is not None:
            index = out.parent / f"{out.name}.previous-index.json"
            shutil.copyfile(request.previous_index, index)
            os.chmod(index, 0o644)
        args = entrypoint_args(request, checkout=checkout, out=out, previous_index=index)
        argv = entrypoint_argv(python, args)
        worker = self._worker(python) if requirements is None else None
        try:
            try:
                proc = await self.jail.run(argv, cwd=checkout, limits=request.limits,
                                           source_date_epoch=request.source_date_epoch,
                                           worker=worker, worker_args=args)
            except WorkerLost as exc:
                log.warning("the build of %r ran again in a fresh interpreter: %s", request.module, exc)
                _empty(out)
                proc = await self.jail.run(argv, cwd=checkout, limits=request.limits,
                                           source_date_epoch=request.source_date_epoch)
        except OSError as exc:
            result = not_started(request, exc)
        else:
            result = interpret(proc, out, request)
        finally:
            self.jail.take_back(out)
            if index is not None:
                index.unlink(missing_ok=True)
        if not result.ok:
            shutil.rmtree(out, ignore_errors=True)
            return result
        problem = check_bundle(out)
        if problem:
            shutil.rmtree(out, ignore_errors=True)
            return BuildResult(False, None, INVALID_BUNDLE, problem, log_tail=result.log_tail,
                               user_error=True)
        return result

    def _worker(self, python: str) -> WarmWorker | None:
        """The warm worker of the venv without requirements, made on first use."""
        if not self.settings.warm:
            return None
        if self.worker is not None and self.worker.python != python:
            self.worker.close()
            self.worker = None
        if self.worker is None:
            work = self.settings.work_dir
            self.worker = WarmWorker(python, env=scrubbed_environment(
                home=work, tmp=work / "runs", bin_dir=Path(python).parent, source_date_epoch=None), cwd=work)
        return self.worker

    def close(self) -> None:
        """Stop the warm worker, if one runs (it also dies with this process)."""
        if self.worker is not None:
            self.worker.close()


def _empty(folder: Path) -> None:
    """Remove what a killed build left in its bundle folder, keeping the folder."""
    for child in folder.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)
