"""`stepflow run` as a real process: compile, publish, run in the foreground, report.

Every test runs the installed `stepflow` command against a fresh store (file:// unless
said otherwise) with the user's configuration files ignored; steps are real processes.
"""

from __future__ import annotations

import json
import os
import signal
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
from stepflow.workflow.parameters import ParameterBoolean, ParameterFloat, ParameterInteger, ParameterString
"""

TYPED = """
epochs = ParameterInteger("Epochs", default_value=1)
rate = ParameterFloat("Rate", default_value=0.1)
fast = ParameterBoolean("Fast", default_value=False)
label = ParameterString("Label", default_value="x")

@step
def prepare():
    return [1, 2, 3]

@step
def train(data, epochs, rate, fast, label):
    return {"total": sum(data) * epochs, "types": [type(v).__name__ for v in (epochs, rate, fast, label)],
            "values": [epochs, rate, fast, label]}

pipeline = Pipeline(name="typed", parameters=[epochs, rate, fast, label],
                    steps=[train(prepare(), epochs, rate, fast, label)])
"""

FAILING = """
@step
def load():
    return {"rows": 3}

@step
def broken(data):
    print("about to fail", flush=True)
    raise ValueError("boom: the input has " + str(data["rows"]) + " rows")

pipeline = Pipeline(name="failing", steps=[broken(load())])
"""


class Project:
    """A folder holding one pipeline module, and how to run `stepflow` on it."""

    def __init__(self, tmp_path: Path, root: str, extra_env: dict[str, str] | None = None) -> None:
        self.dir = tmp_path / "project"
        self.dir.mkdir()
        self.root = root
        config = tmp_path / "config.yaml"
        config.write_text("# nothing configured\n")
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("STEPFLOW_")}
        self.env.update({"STEPFLOW_S3_ROOT_URI": root, "STEPFLOW_CONFIG": str(config),
                         "STEPFLOW_CACHE_DIR": str(tmp_path / "cache"), **LAPTOP_STEPS, **(extra_env or {})})

    def write(self, source: str, name: str = "flow.py") -> str:
        (self.dir / name).write_text(HEADER + textwrap.dedent(source))
        return name

    def run(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
        return subprocess.run([STEPFLOW, *args], cwd=self.dir, env=self.env, capture_output=True, text=True,
                              timeout=timeout)

    def popen(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen([STEPFLOW, *args], cwd=self.dir, env=self.env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)


def read_uri(uri: str) -> bytes:
    assert uri.startswith("file://"), uri
    return Path(uri[len("file://"):]).read_bytes()


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return Project(tmp_path, (tmp_path / "store").as_uri())


def test_success_with_typed_params_and_json_summary(project: Project):
    module = project.write(TYPED)
    proc = project.run("run", module, "--param", "Epochs=3", "-p", "Rate=0.5", "-p", "Fast=TRUE",
                       "-p", "Label=a=b", "--output", "json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert set(data) == {"pipeline", "executionId", "status", "failureReason", "startTime", "endTime",
                         "parameters", "store", "steps"}
    assert data["pipeline"] == "typed" and data["status"] == "Succeeded" and data["failureReason"] is None
    assert data["parameters"] == {"Epochs": 3, "Rate": 0.5, "Fast": True, "Label": "a=b"}  # typed
    assert [s["name"] for s in data["steps"]] == ["prepare", "train"]
    for step in data["steps"]:
        assert set(step) == {"name", "type", "status", "attempts", "startTime", "endTime", "elapsedSeconds",
                             "failureReason", "skipReason", "resultUri", "logUri", "exceptionUri"}
        assert step["status"] == "Succeeded" and step["attempts"] == 1 and step["exceptionUri"] is None
        assert step["startTime"] <= step["endTime"] and step["elapsedSeconds"] >= 0
        assert step["resultUri"] == f"{data['store']}/{data['executionId']}/{step['name']}/results"
        assert read_uri(step["resultUri"] + "/metadata.json")
    result = project.run("result", data["executionId"], "train")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"total": 18, "types": ["int", "float", "bool", "str"],
                                         "values": [3, 0.5, True, "a=b"]}


def test_failure_exits_1_with_reason_log_and_traceback_locations(project: Project):
    module = project.write(FAILING)
    proc = project.run("run", module)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    out = proc.stdout
    assert "Failed" in out and "ValueError: boom: the input has 3 rows" in out
    log_uri = next(line.split()[-1] for line in out.splitlines() if line.strip().startswith("log:"))
    exc_uri = next(line.split()[-1] for line in out.splitlines() if line.strip().startswith("traceback:"))
    log = read_uri(log_uri).decode()
    assert "about to fail" in log and "Traceback" in log and "ValueError: boom" in log
    assert read_uri(exc_uri + "/payload.pkl") and read_uri(exc_uri + "/metadata.json")
    assert log_uri.endswith("/broken/logs/1.log") and exc_uri.endswith("/broken/exception")


def test_json_summary_of_a_failure(project: Project):
    module = project.write(FAILING)
    proc = project.run("run", module, "-o", "json")
    assert proc.returncode == 1
    data = json.loads(proc.stdout)
    assert data["status"] == "Failed"
    assert "ValueError: boom" in data["failureReason"]
    load, broken = data["steps"]
    assert load["status"] == "Succeeded" and load["resultUri"]
    assert broken["status"] == "Failed" and broken["resultUri"] is None
    assert broken["failureReason"] == "ValueError: boom: the input has 3 rows (at flow.py:13 in broken)"
    assert b"about to fail" in read_uri(broken["logUri"])
    assert read_uri(broken["exceptionUri"] + "/metadata.json")


@pytest.mark.parametrize("param, expected", [
    ("Epohcs=3", "did you mean 'Epochs'?"),
    ("Epochs=three", "'Epochs' is an Integer"),
    ("Fast=maybe", "'Fast' is a Boolean"),
])
def test_wrong_parameter_is_a_clear_usage_error_and_runs_nothing(project: Project, param: str, expected: str):
    module = project.write(TYPED)
    proc = project.run("run", module, "--param", param)
    assert proc.returncode == 2, proc.stderr
    assert expected in proc.stderr and "Epochs (Integer, default 1)" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert project.run("executions").stdout.strip() == ""


def test_param_without_value_is_a_usage_error(project: Project):
    module = project.write(TYPED)
    proc = project.run("run", module, "--param", "Epochs")
    assert proc.returncode == 2
    assert "is not NAME=VALUE" in proc.stderr


def test_plain_progress_lines_when_not_a_terminal(project: Project):
    module = project.write(TYPED)
    proc = project.run("run", module)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    assert any(line.endswith("prepare: Executing attempt 1") for line in lines), proc.stderr
    assert any(" train: Succeeded attempt 1 after " in line for line in lines), proc.stderr
    assert "Succeeded" in proc.stdout


def test_against_the_s3_server(tmp_path: Path, s3):
    project = Project(tmp_path, s3.root_uri, s3.env())
    module = project.write(TYPED)
    proc = project.run("run", module, "-p", "Epochs=2", "-o", "json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["store"].startswith(f"s3://{s3.bucket}/")
    key = data["steps"][1]["resultUri"].split(f"s3://{s3.bucket}/", 1)[1] + "/metadata.json"
    assert s3.client().head_object(Bucket=s3.bucket, Key=key)["ContentLength"] > 0
    result = project.run("result", data["executionId"], "train")
    assert json.loads(result.stdout)["total"] == 12
    failing = project.write(FAILING, "failing.py")
    proc = project.run("run", failing)
    assert proc.returncode == 1
    assert f"log:       s3://{s3.bucket}/" in proc.stdout


LEDGER = """
def _mark(name):
    import os, time
    open(os.path.join({ledger!r}, name + "." + str(os.getpid())), "w").close()
    time.sleep({sleep})
    return name

@step
def a():
    return _mark("a")

@step
def b(x):
    return _mark("b")

@step
def c(x):
    return _mark("c")

pipeline = Pipeline(name="ledger", steps=[c(b(a()))])
"""


def ran(ledger: Path) -> list[str]:
    return sorted(p.name.split(".")[0] for p in ledger.iterdir())


def test_killed_run_is_finished_by_resume_with_each_step_once(project: Project, tmp_path: Path):
    ledger = tmp_path / "ledger"
    ledger.mkdir()
    module = project.write(LEDGER.format(ledger=str(ledger), sleep=1.5))
    proc = project.popen("run", module)
    try:
        wait_for(lambda: "b" in ran(ledger), timeout=120, message="step b never started")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        proc.kill()
        proc.communicate()
    executions = project.run("executions", "ledger")
    assert "Executing" in executions.stdout, executions.stdout
    resumed = project.run("resume")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "resumed ledger/" in resumed.stderr and "Succeeded" in resumed.stdout
    assert ran(ledger) == ["a", "b", "c"], f"a step ran more than once: {ran(ledger)}"
    execution_id = resumed.stderr.split("resumed ledger/", 1)[1].split()[0]
    status = json.loads(project.run("status", execution_id, "-o", "json").stdout)
    assert [s["attempts"] for s in status["steps"]] == [1, 1, 1]
    again = project.run("resume")
    assert again.returncode == 0 and "no unfinished executions" in again.stderr


def test_ctrl_c_stops_the_execution(project: Project, tmp_path: Path):
    ledger = tmp_path / "ledger"
    ledger.mkdir()
    module = project.write(LEDGER.format(ledger=str(ledger), sleep=120))
    proc = project.popen("run", module, "-o", "json")
    try:
        wait_for(lambda: "a" in ran(ledger), timeout=120, message="step a never started")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 3, err
    data = json.loads(out)
    assert data["status"] == "Stopped"
    assert [s["status"] for s in data["steps"]] == ["Stopped", "Pending", "Pending"]
    assert "stopping the execution" in err
    step_pid = int(next(ledger.iterdir()).name.split(".")[1])
    wait_for(lambda: not Path(f"/proc/{step_pid}").exists()
             or Path(f"/proc/{step_pid}/stat").read_text().split(")")[1].split()[0] == "Z",
             timeout=10, message="the running step was not terminated")


def test_detach_returns_the_id_and_the_execution_finishes_in_the_background(project: Project, tmp_path: Path):
    ledger = tmp_path / "ledger"
    ledger.mkdir()
    module = project.write(LEDGER.format(ledger=str(ledger), sleep=0))
    proc = project.run("run", module, "--detach")
    assert proc.returncode == 0, proc.stderr
    execution_id = proc.stdout.strip()
    wait_for(lambda: project.run("status", execution_id).returncode == 0, timeout=120,
             message="the detached execution did not succeed")
    assert ran(ledger) == ["a", "b", "c"]


def test_parallelism_limits_concurrent_steps(project: Project):
    module = project.write("""
        def _span():
            import time
            start = time.time(); time.sleep(1); return [start, time.time()]

        @step
        def one():
            return _span()

        @step
        def two():
            return _span()

        pipeline = Pipeline(name="par", steps=[one(), two()])
    """)
    proc = project.run("run", module, "--parallelism", "1", "-o", "json")
    assert proc.returncode == 0, proc.stderr
    execution_id = json.loads(proc.stdout)["executionId"]
    (a0, a1), (b0, b1) = (json.loads(project.run("result", execution_id, s).stdout) for s in ("one", "two"))
    assert a1 <= b0 or b1 <= a0, "with --parallelism 1 the two steps overlapped"
