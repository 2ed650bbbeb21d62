"""Same module and inputs → byte-identical bundle in fresh processes (issue row 1)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from tests.fixtures import PIPELINES, PYTHON


def _build(workdir: Path, out: Path, hash_seed: str, module: str = "determinism_pipeline.py",
           extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STEPFLOW_", "PYTHONHASHSEED"))}
    env.update(PYTHONHASHSEED=hash_seed, SOURCE_DATE_EPOCH="1750000000", **(extra_env or {}))
    return subprocess.run(
        [PYTHON, "-m", "stepflow.compiler.build", "--module", module, "--workdir", str(workdir),
         "--s3-root-uri", "s3://bucket/stepflow", "--out", str(out)],
        env=env, capture_output=True, text=True, timeout=120)


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != "result.json"}


def test_two_fresh_processes_in_different_checkouts_produce_identical_bytes(tmp_path):
    one, two = tmp_path / "checkout-a", tmp_path / "elsewhere" / "checkout-b"
    shutil.copytree(PIPELINES, one)
    shutil.copytree(PIPELINES, two)
    first = _build(one, tmp_path / "out1", "1")
    second = _build(two, tmp_path / "out2", "random")
    assert first.returncode == 0, first.stderr
    assert second.returncode == 0, second.stderr
    a, b = _tree(tmp_path / "out1"), _tree(tmp_path / "out2")
    assert a.keys() == b.keys()
    assert [k for k in a if a[k] != b[k]] == []
    definition = a["definition.json"].decode()
    assert "checkout-a" not in definition and str(tmp_path) not in definition
    names = [s["Name"] for s in json.loads(definition)["Steps"]]
    assert names == ["fit", "fit-2", "prepare"]


def test_pickled_function_runs_without_the_project_on_the_path(tmp_path):
    checkout = tmp_path / "checkout"
    shutil.copytree(PIPELINES, checkout)
    result = _build(checkout, tmp_path / "out", "0")
    assert result.returncode == 0, result.stderr
    files = tmp_path / "out" / "files" / "determinism"
    function = next(files.glob("prepare/*/function/payload.pkl"))
    shutil.rmtree(checkout)  # the step must not need the user's workspace
    code = ("import cloudpickle, sys\n"
            "f = cloudpickle.loads(open(sys.argv[1], 'rb').read())\n"
            "print(f('uri', None))\n")
    run = subprocess.run([PYTHON, "-c", code, str(function)], cwd="/", capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "(['alpha', 'churned'], [2, 4])"
