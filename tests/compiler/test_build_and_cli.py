"""The sandbox build entrypoint and the `stepflow` command, as real processes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from tests.fixtures import PIPELINES, PYTHON, REPO
from tests.testenv import unavailable

STEPFLOW = str(Path(PYTHON).parent / "stepflow")


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STEPFLOW_")}
    env["STEPFLOW_S3_ROOT_URI"] = (tmp_path / "store").as_uri()
    config = tmp_path / "config.yaml"
    config.write_text("# nothing configured\n")
    env["STEPFLOW_CONFIG"] = str(config)
    return env


def build(tmp_path: Path, module: str, *extra: str) -> tuple[int, dict]:
    out = tmp_path / "bundle"
    proc = subprocess.run(
        [PYTHON, "-m", "stepflow.compiler.build", "--module", module, "--workdir", str(PIPELINES),
         "--s3-root-uri", "s3://bucket/root", "--out", str(out), *extra],
        env=_env(tmp_path), capture_output=True, text=True, timeout=120)
    return proc.returncode, json.loads((out / "result.json").read_text())


def test_build_writes_bundle_and_ok_result(tmp_path):
    code, result = build(tmp_path, "seed_condition.py")
    assert code == 0, result
    assert result["ok"] is True and result["pipeline_name"] == "seed-condition"
    assert result["step_count"] == 4
    definition = (tmp_path / "bundle" / "definition.json").read_bytes()
    import hashlib

    assert result["digest"] == "sha256:" + hashlib.sha256(definition).hexdigest()
    assert not list(PIPELINES.rglob("__pycache__")), "loading must not write into the checkout"


def test_build_reuses_folders_from_a_previous_index(tmp_path):
    code, _ = build(tmp_path, "seed_chain.py:pipeline")
    manifest = json.loads((tmp_path / "bundle" / "bundle.json").read_text())
    index = tmp_path / "index.json"
    index.write_text(json.dumps({"format": 1, "objects": {f["key"]: f["sha256"] for f in manifest["files"]}}))
    first = (tmp_path / "bundle" / "definition.json").read_bytes()
    shutil.rmtree(tmp_path / "bundle")
    code, result = build(tmp_path, "seed_chain.py:pipeline", "--previous-index", str(index))
    assert code == 0, result
    assert (tmp_path / "bundle" / "definition.json").read_bytes() == first


@pytest.mark.parametrize("module, reason, file, line, message", [
    ("broken_syntax.py", "SyntaxError", "broken_syntax.py", 5, "Syntax error"),
    ("bad_import.py", "ImportError", "bad_import.py", 3, "module_that_does_not_exist_anywhere"),
    ("no_pipeline.py", "NoPipeline", None, None, "No Pipeline found in no_pipeline.py"),
    ("two_pipelines.py", "AmbiguousPipeline", None, None, "two_pipelines.py:first, two_pipelines.py:second"),
    ("two_pipelines.py:third", "NoPipeline", None, None, "Pipelines found: first, second"),
    ("missing.py", "ModuleNotFound", None, None, "No such file: missing.py"),
    ("cycle_pipeline.py", "DependencyCycle", "cycle_pipeline.py", None, "b -> a -> b"),
    ("misuse_pipeline.py", "PipelineVariableMisused", "misuse_pipeline.py", 11, "ConditionStep"),
])
def test_build_reports_user_errors_with_reason_and_location(tmp_path, module, reason, file, line,
                                                           message):
    code, result = build(tmp_path, module)
    assert code == 2
    assert result["ok"] is False and result["reason"] == reason, result
    assert message in result["message"]
    if file:
        assert result["file"] == file
    if line:
        assert result["line"] == line


def cli(tmp_path: Path, *args: str, cwd: Path = PIPELINES) -> subprocess.CompletedProcess:
    return subprocess.run([STEPFLOW, *args], cwd=cwd, env=_env(tmp_path), capture_output=True,
                          text=True, timeout=120)


def test_cli_compile_writes_the_definition(tmp_path):
    out = tmp_path / "def.json"
    proc = cli(tmp_path, "compile", "seed_chain.py:parallel", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    assert [s["Name"] for s in json.loads(out.read_text())["Steps"]] == ["process1", "process2"]
    stdout = cli(tmp_path, "compile", "seed_chain:parallel")
    assert json.loads(stdout.stdout)["Steps"][0]["Name"] == "process1"


def test_cli_compile_is_byte_stable_across_runs(tmp_path):
    env_runs = []
    for seed in ("1", "2"):
        env = _env(tmp_path) | {"PYTHONHASHSEED": seed, "SOURCE_DATE_EPOCH": "1750000000"}
        env_runs.append(subprocess.run([STEPFLOW, "compile", "determinism_pipeline.py"],
                                       cwd=PIPELINES, env=env, capture_output=True,
                                       timeout=120).stdout)
    assert env_runs[0] == env_runs[1] and env_runs[0].startswith(b'{"Version": "2020-12-01"')


def test_cli_errors_are_one_paragraph_unless_debug(tmp_path):
    proc = cli(tmp_path, "compile", "two_pipelines.py")
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error (AmbiguousPipeline): two_pipelines.py defines several")
    assert proc.stderr.strip().count("\n") == 0
    debug = cli(tmp_path, "--debug", "compile", "two_pipelines.py")
    assert debug.returncode == 1 and "Traceback" in debug.stderr


def test_cli_validate(tmp_path):
    ok = cli(tmp_path, "validate", "seed_condition.py")
    assert ok.returncode == 0 and "ok: pipeline 'seed-condition', 4 steps" in ok.stdout
    bad = cli(tmp_path, "validate", "cycle_pipeline.py")
    assert bad.returncode == 1
    assert "error (DependencyCycle): cycle_pipeline.py:" in bad.stderr


def test_cli_graph_mermaid_and_dot(tmp_path):
    mermaid = cli(tmp_path, "graph", "seed_condition.py")
    assert mermaid.returncode == 0, mermaid.stderr
    assert mermaid.stdout.startswith("flowchart TD")
    assert "-->|if|" in mermaid.stdout and "-->|else|" in mermaid.stdout
    dot = cli(tmp_path, "graph", "seed_chain.py:explicit", "--format", "dot")
    assert '"preprocess" -> "train_alone" [style="dashed"];' in dot.stdout


def test_cli_graph_svg_and_png(tmp_path):
    if shutil.which("dot") is None:
        unavailable("graphviz's `dot` is not installed: run `scripts/testenv install` (apt-get install graphviz)")
    svg = cli(tmp_path, "graph", "seed_condition.py", "--format", "svg")
    assert svg.returncode == 0 and "<svg" in svg.stdout and "conditional_register" in svg.stdout
    png = tmp_path / "g.png"
    assert cli(tmp_path, "graph", "seed_condition.py", "--format", "png", "-o", str(png)).returncode == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_graph_without_graphviz_names_the_install_command(tmp_path):
    env = _env(tmp_path) | {"PATH": str(Path(PYTHON).parent)}
    proc = subprocess.run([STEPFLOW, "graph", "seed_condition.py", "--format", "svg"],
                          cwd=PIPELINES, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert "apt-get install graphviz" in proc.stderr and "GraphvizMissing" in proc.stderr


def test_repo_example_compiles_with_the_cli(tmp_path):
    proc = cli(tmp_path, "validate", "pipelines/churn.py", cwd=REPO / "examples" / "churn")
    assert proc.returncode == 0, proc.stderr
