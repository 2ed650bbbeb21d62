"""``stepflow up`` and ``scripts/demo`` as a user runs them: real processes, real git, real steps."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from tests.fixtures import LAPTOP_STEPS
from tests.testenv import wait_for

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "churn"
CHURN = "pipelines/churn.py"
STEPFLOW = str(Path(sys.executable).parent / "stepflow")


def example_files() -> dict[str, str]:
    return {str(p.relative_to(EXAMPLE)): p.read_text() for p in EXAMPLE.rglob("*.py")
            if "__pycache__" not in p.parts}


def manifest(name: str, url: str, module: str = CHURN, parameters: str = "{Rows: 300, Epochs: 20}") -> str:
    return textwrap.dedent(f"""\
        apiVersion: stepflow.dev/v1alpha1
        kind: Pipeline
        metadata: {{name: {name}}}
        spec:
          source: {{url: "{url}", ref: {{branch: main}}}}
          module: {module}
          trigger: {{parameters: {parameters}}}
        """)


@pytest.fixture
def up(tmp_path):
    """up(*args) runs ``stepflow up ARGS --store <tmp store> <tmp manifests>`` to completion."""
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    store = (tmp_path / "store").as_uri()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STEPFLOW_", "AWS_"))}
    env.update(STEPFLOW_CACHE_DIR=str(tmp_path / "cache"), STEPFLOW_USER_CONFIG="", STEPFLOW_ADMIN_CONFIG="",
               COLUMNS="250", **LAPTOP_STEPS)

    def run(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
        return subprocess.run([STEPFLOW, "up", *args, "--store", store, str(manifests)], env=env,
                              capture_output=True, text=True, timeout=timeout)

    run.manifests = manifests
    run.env = env
    run.store = store
    return run


def test_once_runs_the_example_then_a_second_pass_does_nothing(up, git_remote):
    sha = git_remote.commit(example_files(), "churn example")
    (up.manifests / "churn.yaml").write_text(manifest("churn", git_remote.file_url))

    first = up("--once")
    assert first.returncode == 0, first.stderr
    table = first.stdout.splitlines()
    assert table[0].split()[:7] == ["NAME", "REVISION", "READY", "PHASE", "STEPS", "LAST", "RUN"]
    assert table[1].split()[:5] == ["churn", sha[:7], "True", "Succeeded", "6/6"]
    assert "ExecutionStarted" in first.stderr and "ExecutionSucceeded" in first.stderr
    assert "DefinitionPublished" in first.stderr

    second = up("--once")
    assert second.returncode == 0, second.stderr
    assert second.stdout.splitlines()[1].split()[:5] == ["churn", sha[:7], "True", "Succeeded", "6/6"]
    for word in ("NewRevision", "DefinitionPublished", "ExecutionStarted"):
        assert word not in second.stderr, second.stderr


def test_once_fails_with_the_build_error_and_keeps_the_last_good_definition(up, git_remote):
    good = git_remote.commit(example_files(), "churn example")
    (up.manifests / "churn.yaml").write_text(manifest("churn", git_remote.file_url))
    assert up("--once").returncode == 0

    broken = example_files()[CHURN].replace("rows = ParameterInteger(", "rows = ParameterInteger(((", 1)
    line = next(i for i, text in enumerate(broken.splitlines(), 1) if "ParameterInteger(((" in text)
    git_remote.commit({CHURN: broken}, "syntax error")
    result = up("--once")
    assert result.returncode == 1
    assert "SyntaxError" in result.stderr and f"churn.py:{line}" in result.stderr, result.stderr
    assert "last good definition" in result.stderr
    row = result.stdout.splitlines()[1].split()
    assert row[:4] == ["churn", git_remote.head()[:7], "False", "Succeeded"], result.stdout
    # ... and the row says whose phase that is: the last execution's, of the good revision.
    assert f"(PHASE is the last execution's of main@sha1:{good[:7]})" in result.stdout, result.stdout


def test_once_reports_a_failing_step_with_its_reason_and_log(up, git_remote):
    failing = example_files()[CHURN].replace(
        '    """Fit a logistic regression by full-batch gradient descent."""\n',
        '    """Fit a logistic regression by full-batch gradient descent."""\n'
        '    raise ValueError("no convergence today")\n')
    git_remote.commit({**example_files(), CHURN: failing}, "failing train")
    (up.manifests / "churn.yaml").write_text(manifest("churn", git_remote.file_url))
    result = up("--once")
    assert result.returncode == 1, result.stdout + result.stderr
    # The location is relative to the repository's root, as the build's checkout sees it.
    line = next(i for i, text in enumerate(failing.splitlines(), 1) if "no convergence today" in text)
    assert f"step train failed: ValueError: no convergence today (at {CHURN}:{line} in train)" in result.stderr, \
        result.stderr
    assert "<dynamic-code>" not in result.stderr
    log_line = next(line for line in result.stderr.splitlines() if line.strip().startswith("log:"))
    log = Path(log_line.split("log:", 1)[1].strip().removeprefix("file://"))
    assert "no convergence today" in log.read_text()
    assert result.stdout.splitlines()[1].split()[2:4] == ["True", "Failed"]


def test_one_bad_manifest_does_not_stop_the_others(up, git_remote):
    git_remote.commit(example_files(), "churn example")
    (up.manifests / "good.yaml").write_text(manifest("churn", git_remote.file_url))
    bad = manifest("bad", git_remote.file_url).replace("ref: {branch: main}", "ref: {branch: main}, intervl: 1m")
    (up.manifests / "bad.yaml").write_text(bad)
    result = up("--once")
    assert result.returncode == 1
    assert f"{up.manifests / 'bad.yaml'}: spec.source.intervl is not a Pipeline field; did you mean " \
           "spec.source.interval?" in result.stderr, result.stderr
    rows = {line.split()[0]: line.split() for line in result.stdout.splitlines()[1:]}
    assert "churn" in rows, result.stdout + result.stderr
    assert rows["churn"][2:5] == ["True", "Succeeded", "6/6"]
    assert rows["bad"][1] == "False"  # no revision: never reconciled


def test_interrupt_stops_cleanly_and_the_next_run_resumes(up, git_remote, tmp_path):
    slow = textwrap.dedent('''\
        from stepflow.workflow.function_step import step
        from stepflow.workflow.pipeline import Pipeline

        @step(name="slow")
        def slow(marker: str) -> int:
            import time
            with open(marker, "a") as f:
                f.write("ran\\n")
            time.sleep(3)
            return 1

        pipeline = Pipeline(name="slowpipe", steps=[slow("MARKER")])
        ''').replace("MARKER", str(tmp_path / "ran.txt"))
    git_remote.commit({"pipelines/slow.py": slow}, "slow")
    (up.manifests / "slow.yaml").write_text(manifest("slow", git_remote.file_url, "pipelines/slow.py", "{}"))
    proc = subprocess.Popen([STEPFLOW, "up", "--interval", "1h", "--store", up.store, str(up.manifests)],
                            env=up.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: (tmp_path / "ran.txt").exists(), timeout=90, message="the step to start")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    # The hint is the command that was interrupted, store included: it works when pasted.
    assert f"resume on the next `stepflow up {up.manifests} --store {up.store}`" in err, err

    result = up("--once")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[1].split()[2:5] == ["True", "Succeeded", "1/1"]
    assert (tmp_path / "ran.txt").read_text() == "ran\n", "the step ran exactly once"


def test_scripts_demo_runs_green_on_a_copy_of_the_repository(tmp_path):
    """The README's first command, on a copy of the tree (the demo writes only under .stepflow/)."""
    copy = tmp_path / "repo"
    for part in ("scripts", "examples", "pyproject.toml"):
        source = REPO / part
        (shutil.copytree if source.is_dir() else shutil.copy2)(source, copy / part)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STEPFLOW_", "AWS_", "GIT_"))}
    env.update(STEPFLOW_VENV=str(Path(sys.executable).parent.parent), STEPFLOW_USER_CONFIG="",
               STEPFLOW_ADMIN_CONFIG="", HOME=str(tmp_path / "home"), **LAPTOP_STEPS)
    first = subprocess.run([str(copy / "scripts" / "demo")], env=env, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stdout + first.stderr
    assert first.stdout.splitlines()[1].split()[:5][2:] == ["True", "Succeeded", "6/6"], first.stdout
    assert (copy / ".stepflow" / "store" / ".stepflow-up" / "churn.json").exists()

    second = subprocess.run([str(copy / "scripts" / "demo")], env=env, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr
    assert "committed" not in second.stderr and "ExecutionStarted" not in second.stderr

    churn = copy / "examples" / "churn" / CHURN
    churn.write_text(churn.read_text().replace("default_value=150", "default_value=120"))
    third = subprocess.run([str(copy / "scripts" / "demo")], env=env, capture_output=True, text=True, timeout=300)
    assert third.returncode == 0, third.stderr
    assert "committed examples/churn/" in third.stderr and "ExecutionStarted" in third.stderr


def test_the_manifests_name_works_where_the_pipelines_does(up, git_remote):
    """A manifest `sales-eu` builds the pipeline `churn`: both names reach its executions."""
    git_remote.commit(example_files(), "churn example")
    (up.manifests / "sales-eu.yaml").write_text(manifest("sales-eu", git_remote.file_url))
    assert up("--once").returncode == 0

    def stepflow(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([STEPFLOW, *args, "--store", up.store], env=up.env, capture_output=True, text=True,
                              timeout=60)

    by_manifest, by_pipeline = stepflow("executions", "sales-eu", "-o", "json"), stepflow("executions", "churn",
                                                                                           "-o", "json")
    assert by_manifest.returncode == 0, by_manifest.stderr
    assert by_manifest.stdout == by_pipeline.stdout and '"pipeline": "churn"' in by_manifest.stdout
    listed = stepflow("pipelines").stdout.splitlines()
    assert listed[1].split()[:3] == ["churn", "sales-eu", "6"], listed
    assert stepflow("gc", "sales-eu", "--dry-run").returncode == 0


def test_no_manifest_is_said_and_other_yaml_is_ignored(up):
    chart = up.manifests / "charts" / "templates"
    chart.mkdir(parents=True)
    (chart / "deployment.yaml").write_text("metadata:\n  labels:\n    {{- include \"x\" . | nindent 4 }}\n")
    (up.manifests / "values.yaml").write_text("replicas: 2\n")
    result = up("--once")
    assert result.returncode == 1
    assert "no stepflow Pipeline manifest (apiVersion: stepflow.dev/v1alpha1, kind: Pipeline)" in result.stderr
    assert "InvalidManifest" not in result.stderr and "not valid YAML" not in result.stderr


def test_once_fails_while_the_latest_execution_is_failed(up, git_remote):
    """--once's help promises 0 only when the latest execution Succeeded, even if an earlier
    pass ran it and this one had nothing to do."""
    failing = example_files()[CHURN].replace(
        '    """Fit a logistic regression by full-batch gradient descent."""\n',
        '    """Fit a logistic regression by full-batch gradient descent."""\n'
        '    raise ValueError("no convergence today")\n')
    git_remote.commit({**example_files(), CHURN: failing}, "failing train")
    (up.manifests / "churn.yaml").write_text(manifest("churn", git_remote.file_url))
    assert up("--once").returncode == 1
    again = up("--once")
    assert again.returncode == 1, again.stdout + again.stderr
    assert "ExecutionStarted" not in again.stderr
    assert "latest execution churn-" in again.stderr and "is Failed (from an earlier pass)" in again.stderr
    assert "see: stepflow status churn-" in again.stderr and f"--store {up.store}" in again.stderr
