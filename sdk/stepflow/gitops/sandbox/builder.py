"""One build, from a checkout to a bundle folder: paths, venv, entrypoint, result, bundle check."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from stepflow.gitops.sandbox.jail import Jail
from stepflow.gitops.sandbox.paths import check_bundle, check_module_path, requirements_file
from stepflow.gitops.sandbox.protocol import (
    INVALID_BUNDLE,
    INVALID_MODULE_PATH,
    INVALID_REQUIREMENTS_PATH,
    BuildRequest,
    BuildResult,
    entrypoint_argv,
    interpret,
    not_started,
)
from stepflow.gitops.sandbox.settings import SandboxSettings
from stepflow.gitops.sandbox.venvs import Venvs


class Sandbox:
    """Runs builds in the jail, with the repository's requirements installed in a venv.

    ``<work_dir>`` holds ``runs/`` (each process's private HOME and TMPDIR), ``builds/``
    (bundle folders) and ``venvs/``.
    """

    def __init__(self, settings: SandboxSettings) -> None:
        self.settings = settings
        self.jail = Jail(settings)
        self.venvs = Venvs(self.jail)
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
        argv = entrypoint_argv(python, request, checkout=checkout, out=out, previous_index=index)
        try:
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
