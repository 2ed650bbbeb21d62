"""The build sandbox: user code runs here, never in the operator.

One module per job:

* ``settings`` — what an installation configures (``SandboxSettings``, ``Limits``) and
  ``SandboxError``, raised when the installation itself is the problem;
* ``jail`` — runs one process as another user, with an allow-listed environment and limits;
* ``venvs`` — the repository's requirements, installed once per digest into a shared venv;
* ``protocol`` — the ``python -m stepflow.compiler.build`` call and its answer
  (``BuildRequest``, ``BuildResult`` and the failure reasons);
* ``paths`` — which module, requirements and bundle paths a build may use;
* ``builder`` — ``Sandbox``, which puts them together into one build.
"""

from stepflow.gitops.sandbox.builder import Sandbox
from stepflow.gitops.sandbox.jail import ProcessResult
from stepflow.gitops.sandbox.paths import check_module_path
from stepflow.gitops.sandbox.protocol import (
    BUILD_CRASHED,
    BUILD_OUT_OF_MEMORY,
    BUILD_TIMEOUT,
    INVALID_BUNDLE,
    INVALID_MODULE_PATH,
    INVALID_REQUIREMENTS_PATH,
    REQUIREMENTS_FAILED,
    BuildRequest,
    BuildResult,
)
from stepflow.gitops.sandbox.settings import NOBODY, Limits, SandboxError, SandboxSettings

__all__ = [
    "BUILD_CRASHED", "BUILD_OUT_OF_MEMORY", "BUILD_TIMEOUT", "INVALID_BUNDLE",
    "INVALID_MODULE_PATH", "INVALID_REQUIREMENTS_PATH", "NOBODY", "REQUIREMENTS_FAILED",
    "BuildRequest", "BuildResult", "Limits", "ProcessResult", "Sandbox", "SandboxError",
    "SandboxSettings", "check_module_path",
]
