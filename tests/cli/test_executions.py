"""`stepflow executions/status/logs/result/stop/resume` as real processes over a real store.

Executions are made with `stepflow run` (a real foreground orchestrator and real step
processes); the commands under test are separate processes that only share the store.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from tests.fixtures import LAPTOP_STEPS
from tests.testenv import wait_for

STEPFLOW = str(Path(sys.executable).parent / "stepflow")

HEADER = """
from stepflow.workflow.function_step import step
from stepflow.workflow.pipeline import Pipeline
"""

MIXED = """
@step
def numbers():
    return {"mean": 2.5, "items": [1, 2, 3]}

@step
def shapes():
    return {1, 2}

@step
def broken():
    print("stdout of the broken step", flush=True)
    raise RuntimeError("nothing to see")

ok = Pipeline(name="ok", steps=[numbers(), shapes()])
bad = Pipeline(name="bad", steps=[broken()])
"""


class Project:
    def __init__(self, tmp_path: Path) -> None:
        self.dir = tmp_path / "project"
        self.dir.mkdir()
        self.store = tmp_path / "store"
        config = tmp_path / "config.yaml"
        config.write_text("# nothing configured\n")
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("STEPFLOW_")}
        self.env.update({"STEPFLOW_S3_ROOT_URI": self.store.as_uri(), "STEPFLOW_CONFIG": str(config),
                         "STEPFLOW_CACHE_DIR": str(tmp_path / "cache"), **LAPTOP_STEPS})

    def write(self, source: str, name: str = "flow.py") -> str:
        (self.dir / name).write_text(HEADER + textwrap.dedent(source))
        return name

    def run(self, *args: str, env: dict[str, str] | None = None, timeout: float = 180) -> subprocess.CompletedProcess:
        return subprocess.run([STEPFLOW, *args], cwd=self.dir, env=env or self.env, capture_output=True,
                              text=True, timeout=timeout)

    def execute(self, target: str, *args: str) -> dict:
        proc = self.run("run", target, "-o", "json", *args)
        assert proc.returncode in (0, 1), proc.stderr
        return json.loads(proc.stdout)


@pytest.fixture(scope="module")
def populated(tmp_path_factory) -> tuple[Project, list[dict]]:
    """One store with three executions: ok (Succeeded), bad (Failed), ok again (Succeeded)."""
    project = Project(tmp_path_factory.mktemp("executions"))
    module = project.write(MIXED)
    runs = [project.execute(f"{module}:ok"), project.execute(f"{module}:bad"), project.execute(f"{module}:ok")]
    assert [r["status"] for r in runs] == ["Succeeded", "Failed", "Succeeded"]
    return project, runs


def ids_in(table: str) -> list[str]:
    return [line.split()[0] for line in table.splitlines()[1:] if line.strip()]


def test_executions_lists_newest_first_across_pipelines_and_per_pipeline(populated):
    project, runs = populated
    proc = project.run("executions")
    assert proc.returncode == 0, proc.stderr
    assert ids_in(proc.stdout) == [runs[2]["executionId"], runs[1]["executionId"], runs[0]["executionId"]]
    lines = proc.stdout.splitlines()
    assert "bad" in lines[2] and "Failed" in lines[2] and "RuntimeError: nothing to see" in lines[2]
    only_ok = project.run("executions", "ok")
    assert ids_in(only_ok.stdout) == [runs[2]["executionId"], runs[0]["executionId"]]
    assert ids_in(project.run("executions", "--limit", "1").stdout) == [runs[2]["executionId"]]


def test_executions_of_an_unknown_pipeline_is_an_error(populated):
    project, _ = populated
    proc = project.run("executions", "nope")
    assert proc.returncode == 1
    assert "No pipeline 'nope' in file://" in proc.stderr
    assert "the pipelines there are: bad, ok" in proc.stderr and "Traceback" not in proc.stderr


def test_status_exit_code_and_json(populated):
    project, runs = populated
    good, bad = runs[0], runs[1]
    proc = project.run("status", good["executionId"])
    assert proc.returncode == 0
    assert "numbers" in proc.stdout and "shapes" in proc.stdout and "Succeeded" in proc.stdout
    proc = project.run("status", bad["executionId"], "--output", "json")
    assert proc.returncode == 1
    data = json.loads(proc.stdout)
    assert data == bad  # the same summary `run -o json` printed
    text = project.run("status", bad["executionId"]).stdout
    assert "RuntimeError: nothing to see" in text and bad["steps"][0]["logUri"] in text


def test_execution_given_as_prefix_or_pipeline_slash_id(populated):
    project, runs = populated
    execution_id = runs[1]["executionId"]
    assert json.loads(project.run("status", "bad/" + execution_id, "-o", "json").stdout)["pipeline"] == "bad"
    others = [runs[0]["executionId"], runs[2]["executionId"]]
    short = next(execution_id[:n] for n in range(1, len(execution_id))
                 if not any(o.startswith(execution_id[:n]) for o in others))
    assert json.loads(project.run("status", short, "-o", "json").stdout)["executionId"] == execution_id
    ambiguous = project.run("status", "2")
    assert ambiguous.returncode == 1 and "matches several executions" in ambiguous.stderr
    missing = project.run("status", "19990101t000000-000000")
    assert missing.returncode == 1 and "No execution '19990101t000000-000000'" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_execution_given_as_its_arn_in_either_shape(populated):
    project, runs = populated
    execution_id = runs[1]["executionId"]
    for arn in (f"arn:aws:sagemaker:us-east-1:000000000000:pipeline/bad/execution/{execution_id}",
                f"stepflow:local:pipeline/bad/execution/{execution_id}"):
        proc = project.run("status", arn, "-o", "json")
        assert json.loads(proc.stdout)["executionId"] == execution_id, proc.stderr
    wrong = project.run("status", "arn:aws:sagemaker:us-east-1:000000000000:pipeline/bad")
    assert wrong.returncode != 0 and "is a pipeline ARN" in wrong.stderr


def test_logs_of_a_step(populated):
    project, runs = populated
    proc = project.run("logs", runs[1]["executionId"], "broken")
    assert proc.returncode == 0, proc.stderr
    assert "stdout of the broken step" in proc.stdout and "RuntimeError: nothing to see" in proc.stdout
    wrong = project.run("logs", runs[1]["executionId"], "broken", "--attempt", "2")
    assert wrong.returncode == 1 and "has 1 attempt(s)" in wrong.stderr
    unknown = project.run("logs", runs[1]["executionId"], "brokn")
    assert unknown.returncode == 1 and "its steps are: broken" in unknown.stderr


def test_result_prints_json_or_repr_and_refuses_failed_steps(populated):
    project, runs = populated
    good, bad = runs[0]["executionId"], runs[1]["executionId"]
    proc = project.run("result", good, "numbers")
    assert proc.returncode == 0 and json.loads(proc.stdout) == {"mean": 2.5, "items": [1, 2, 3]}
    proc = project.run("result", good, "shapes")
    assert proc.returncode == 0 and proc.stdout.strip() == "{1, 2}"
    proc = project.run("result", bad, "broken")
    assert proc.returncode == 1 and "not in Completed status (it is Failed)" in proc.stderr


def test_store_option_overrides_the_environment(populated, tmp_path):
    project, runs = populated
    env = dict(project.env, STEPFLOW_S3_ROOT_URI=(tmp_path / "elsewhere").as_uri())
    assert project.run("status", runs[0]["executionId"], env=env).returncode == 1
    proc = project.run("status", runs[0]["executionId"], "--store", project.store.as_uri(), env=env)
    assert proc.returncode == 0, proc.stderr


def test_logs_of_every_attempt_of_a_retried_step(tmp_path):
    project = Project(tmp_path)
    marker = tmp_path / "first-attempt"
    module = project.write(f"""
        @step(max_retry_attempts=2)
        def flaky():
            import os, signal
            print("attempt starting", flush=True)
            if not os.path.exists({str(marker)!r}):
                open({str(marker)!r}, "w").close()
                print("dying now", flush=True)
                os.kill(os.getpid(), signal.SIGKILL)
            print("second time lucky", flush=True)
            return 2

        pipeline = Pipeline(name="flaky", steps=[flaky()])
    """)
    data = project.execute(module)
    assert data["status"] == "Succeeded" and data["steps"][0]["attempts"] == 2
    first = project.run("logs", data["executionId"], "flaky", "--attempt", "1").stdout
    last = project.run("logs", data["executionId"], "flaky").stdout
    assert "dying now" in first and "second time lucky" not in first
    assert "second time lucky" in last and "dying now" not in last


def test_stop_a_detached_execution_and_logs_while_running(tmp_path):
    project = Project(tmp_path)
    started = tmp_path / "started"
    module = project.write(f"""
        @step
        def long():
            import time
            print("working", flush=True)
            open({str(started)!r}, "w").close()
            time.sleep(120)

        pipeline = Pipeline(name="long", steps=[long()])
    """)
    proc = project.run("run", module, "--detach")
    assert proc.returncode == 0, proc.stderr
    execution_id = proc.stdout.strip()
    wait_for(started.exists, timeout=120, message="the step never started")
    assert project.run("status", execution_id).returncode == 4
    assert "working" in project.run("logs", execution_id, "long").stdout  # not uploaded yet: the local file
    stopped = project.run("stop", execution_id)
    assert stopped.returncode == 0, stopped.stderr
    assert stopped.stdout.strip() == f"long/{execution_id}: Stopped"
    status = project.run("status", execution_id, "-o", "json")
    assert status.returncode == 3
    assert json.loads(status.stdout)["steps"][0]["status"] == "Stopped"


def test_resume_of_a_finished_execution_changes_nothing(populated):
    project, runs = populated
    proc = project.run("resume", runs[1]["executionId"])
    assert proc.returncode == 1  # it failed, and stays failed
    assert "already ended: Failed" in proc.stderr
    assert json.loads(project.run("status", runs[1]["executionId"], "-o", "json").stdout) == runs[1]
