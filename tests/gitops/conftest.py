"""Fixtures of the GitOps core's tests."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest
from gitops_world import BUILD_PYTHON, EXAMPLE, Repo
from tests.testenv import unavailable

from stepflow import confine
from stepflow.gitops.reconciler import Reconciler

#: The two ways a build is confined (stepflow.confine); tests taking ``mode`` run in each.
MODES = [confine.NAMESPACES, confine.REAPER]

ROOT = os.geteuid() == 0


@pytest.fixture(scope="session")
def build_python(unprivileged_python: str) -> str:
    """An interpreter of this Python version that the sandbox user can execute."""
    return unprivileged_python


@pytest.fixture
def root_dir():
    """A folder others may traverse (pytest's tmp_path lives under a 0700 folder)."""
    path = Path(tempfile.mkdtemp(prefix="stepflow-sandbox-test-"))
    os.chmod(path, 0o711)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def checkout(root_dir: Path) -> Path:
    path = root_dir / "checkout"
    path.mkdir(mode=0o700)
    return path


@pytest.fixture
def world(monkeypatch):
    """A repo with the example pipeline, a reconciler, a store; under /var/tmp (the sandbox's
    unprivileged user must be able to traverse its work folders)."""
    if not Path(BUILD_PYTHON).exists() and os.geteuid() == 0:
        pytest.fail(f"{BUILD_PYTHON} is needed to run sandboxed builds as root here")
    monkeypatch.setenv("STEPFLOW_BUILD_PYTHON", BUILD_PYTHON)
    base = Path(tempfile.mkdtemp(prefix="stepflow-rec-", dir="/var/tmp"))
    base.chmod(0o711)
    monkeypatch.setenv("STEPFLOW_CACHE_DIR", str(base / "cache"))  # steps' venvs: reachable
    repo = Repo(base / "repo")
    repo.commit({"pipelines/churn.py": EXAMPLE.read_text(), "README.md": "churn\n"}, "initial")
    reconciler = Reconciler(work_dir=base / "work", default_s3_root_uri=(base / "store").as_uri())
    yield repo, reconciler, base
    reconciler.close()  # its warm build worker
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(params=MODES)
def mode(request, build_python: str) -> str:
    if request.param == confine.NAMESPACES:
        problem = confine.probe(build_python)
        if problem:
            unavailable(f"pid and mount namespaces are not available here: {problem}")
    return request.param
