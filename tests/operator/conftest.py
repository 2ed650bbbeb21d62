"""The ``world`` fixture of the operator's end-to-end tests (see world.py)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest
from tests.operator.world import BUILD_PYTHON, World
from tests.testenv import unavailable


@pytest.fixture
def world(kube, s3, request):
    if os.geteuid() == 0 and not Path(BUILD_PYTHON).exists():
        unavailable(f"{BUILD_PYTHON} is needed: builds run as uid 65534, who cannot run the venv's python")
    base = Path(tempfile.mkdtemp(prefix="stepflow-op-", dir="/var/tmp"))
    base.chmod(0o711)
    w = World(kube, s3, base)
    yield w
    for op in w.operators:
        op.stop()
    for i, op in enumerate(w.operators):
        print(f"--- operator {i} log ({op.log}) ---\n{op.tail(200)}")
    kube.kubectl("delete", "namespace", w.namespace, "--wait=false", check=False)
    shutil.rmtree(base, ignore_errors=True)
