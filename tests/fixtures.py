"""Fixtures and helpers shared by tests/compiler, tests/workflow and tests/storage.

Registered for the whole suite by ``pytest_plugins`` in tests/conftest.py; import the
helpers and paths from here (``from tests.fixtures import steps_by_name``), never from a
``conftest`` module.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from tests.testenv import unavailable

from stepflow.compiler import compile_pipeline
from stepflow.compiler.bundle import Bundle
from stepflow.config import StepflowConfig
from stepflow.confine import NOBODY
from stepflow.session import Session
from stepflow.storage import open_store

#: The test-input pipeline modules (loaded by path, copied, built in the sandbox).
PIPELINES = Path(__file__).resolve().parent / "compiler" / "pipelines"
REPO = Path(__file__).resolve().parents[1]
PYTHON = sys.executable


#: What `stepflow run` gets on a developer's machine (not root): steps run as the same user,
#: without namespaces. The CLI's tests run as root here; they pass this to test that case
#: (running steps as another user is tested in tests/runtime, tests/backends, tests/gitops).
LAPTOP_STEPS = {"STEPFLOW_STEP_UID": "none", "STEPFLOW_STEP_CONFINEMENT": "reaper"}


def _runnable_by_nobody(python: str) -> bool:
    try:
        return subprocess.run([python, "-c", "import sys"], user=NOBODY, group=NOBODY,
                              extra_groups=[], capture_output=True, timeout=30).returncode == 0
    except PermissionError:
        return False


@pytest.fixture(scope="session")
def unprivileged_python() -> str:
    """An interpreter of this Python version that uid 65534 (builds, steps) can execute.

    The project venv's Python may live under a 0700 /root (pyenv); then use the system's
    Python of the same version (it sees our packages: the sandbox's .pth, the runtime's
    ``site.addsitedir``). Set it as ``STEPFLOW_BUILD_PYTHON`` / ``STEPFLOW_STEP_PYTHON``.
    """
    if os.geteuid() != 0 or _runnable_by_nobody(sys.executable):
        return sys.executable
    same = shutil.which(f"python{sys.version_info.major}.{sys.version_info.minor}",
                        path="/usr/local/bin:/usr/bin:/bin")
    if same and _runnable_by_nobody(same):
        return same
    unavailable(f"no python{sys.version_info.major}.{sys.version_info.minor} that uid "
                f"{NOBODY} can execute; install one under /usr (or make {sys.executable}'s "
                "folders traversable)")
    raise AssertionError("unreachable")


@pytest.fixture
def traversable_dir():
    """A fresh folder others may traverse, for what uid 65534 must reach when the tests run
    as root (venv caches, files a step reads). Not under /tmp: pytest's tmp_path lives under
    a 0700 folder, and a confined step gets a private /tmp (stepflow.confine)."""
    base = REPO / ".cache" / "tests"
    base.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix="stepflow-test-", dir=base))
    path.chmod(0o711)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def step_env(monkeypatch, traversable_dir, unprivileged_python) -> Path:
    """Steps of the local backend can run here when the tests run as root (their user code
    then runs as uid 65534): a reachable cache dir, an interpreter that uid can execute."""
    monkeypatch.setenv("STEPFLOW_CACHE_DIR", str(traversable_dir / "cache"))
    monkeypatch.setenv("STEPFLOW_STEP_PYTHON", unprivileged_python)
    return traversable_dir / "cache"


@pytest.fixture(params=["file", "s3"])
def store(request, tmp_path, monkeypatch):
    """An empty store, once on file:// and once on the real S3 server."""
    if request.param == "file":
        return open_store((tmp_path / "store").as_uri())
    s3 = request.getfixturevalue("s3")
    for name, value in s3.env().items():
        monkeypatch.setenv(name, value)
    return open_store(s3.root_uri, s3.endpoint_url)


@pytest.fixture
def store_root(tmp_path: Path) -> str:
    return (tmp_path / "store").as_uri()


@pytest.fixture
def session(store_root: str) -> Session:
    """A session on a fresh file:// store that ignores the user's configuration files."""
    return Session(config=StepflowConfig(s3_root_uri=store_root))


@pytest.fixture
def compile_(session: Session, tmp_path: Path):
    """Compile a pipeline (given the test session) into a fresh bundle folder."""
    counter = iter(range(1000))

    def run(pipeline, **kwargs) -> Bundle:
        if pipeline._session is None:
            pipeline._session = session
        kwargs.setdefault("s3_root_uri", session.s3_root_uri)
        kwargs.setdefault("region", pipeline.session.region)
        kwargs.setdefault("remote_function_defaults", pipeline.session.remote_function_defaults)
        return compile_pipeline(pipeline, out_dir=str(tmp_path / f"bundle{next(counter)}"),
                                **kwargs)

    return run


def steps_by_name(definition: dict) -> dict[str, dict]:
    """Every step request, top level and inside condition branches."""
    found: dict[str, dict] = {}

    def visit(steps: list[dict]) -> None:
        for s in steps:
            found[s["Name"]] = s
            if s["Type"] == "Condition":
                visit(s["Arguments"]["IfSteps"])
                visit(s["Arguments"]["ElseSteps"])

    visit(definition["Steps"])
    return found


def container_args(step_request: dict) -> list:
    return step_request["Arguments"]["AlgorithmSpecification"]["ContainerArguments"]


def flag(step_request: dict, name: str):
    args = container_args(step_request)
    return args[args.index(name) + 1] if name in args else None
