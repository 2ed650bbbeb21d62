"""Errors and logs as a data scientist meets them: the user's file and line, live output,
dependency installs in the log, and a local package used without shipping it."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import threading
from pathlib import Path

import pytest
from tests.cli.project import STEPFLOW as STEPFLOW_BIN
from tests.cli.project import Project
from tests.testenv import wait_for
from tests.testenv.wheels import make_wheel

BOOM = """
@step
def load():
    return {"rows": 3}

@step
def crunch(data):
    print("crunching", flush=True)
    total = data["rows"] * 2
    raise ValueError(f"boom at {total}")

pipeline = Pipeline(name="boom", steps=[crunch(load())])
"""


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return Project(tmp_path)


def test_a_failing_step_names_the_users_file_line_and_source_everywhere(project: Project):
    module = project.write(BOOM, "pipelines/boom.py")
    line = project.line_of(module, 'raise ValueError(f"boom')
    proc = project.run("run", module)
    assert proc.returncode == 1
    where = f"(at pipelines/boom.py:{line} in crunch)"
    # The run summary: the reason with the location, then the source line.
    assert f"step crunch failed: ValueError: boom at 6 {where}" in proc.stdout, proc.stdout
    assert f'at pipelines/boom.py:{line}:  raise ValueError(f"boom at {{total}}")' in proc.stdout
    assert "<dynamic-code>" not in proc.stdout + proc.stderr
    # The JSON summary (what the status of a PipelineExecution is made from) carries it too.
    data = json.loads(project.run("status", proc.stdout.split("see: stepflow logs ")[1].split()[0],
                                  "-o", "json").stdout)
    assert data["failureReason"].endswith(where) and data["steps"][1]["failureReason"].endswith(where)
    # `stepflow logs`: the traceback starts at the user's frame and shows the source line.
    logs = project.run("logs", data["executionId"], "crunch")
    assert logs.returncode == 0, logs.stderr
    assert f'  File "pipelines/boom.py", line {line}, in crunch\n    raise ValueError(f"boom at {{total}}")\n' \
        in logs.stdout, logs.stdout
    assert "stepflow/runtime" not in logs.stdout and "<dynamic-code>" not in logs.stdout
    assert logs.stdout.startswith("crunching\n")


def test_logs_follow_prints_output_as_the_step_runs_and_returns_when_it_ends(project: Project, tmp_path: Path):
    gate = tmp_path / "gate"
    module = project.write(f"""
        @step
        def slow():
            import os, time
            print("first line", flush=True)
            while not os.path.exists({str(gate)!r}):
                time.sleep(0.05)
            print("second line", flush=True)
            return 1

        pipeline = Pipeline(name="slow", steps=[slow()])
    """)
    execution = project.run("run", module, "--detach").stdout.strip()
    follower = project.popen("logs", "-f", execution, "slow")
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(follower.stdout), daemon=True)
    reader.start()
    try:
        wait_for(lambda: "first line\n" in lines, timeout=60, message="logs -f did not show the first line live")
        assert follower.poll() is None, "logs -f returned while the step was still running"
        gate.touch()
        assert follower.wait(timeout=60) == 0, follower.stderr.read()
    finally:
        follower.kill()
    reader.join(timeout=10)
    text = "".join(lines)
    assert text.index("first line") < text.index("second line") and text.count("first line") == 1


def test_status_watch_in_a_pipe_prints_changes_and_exits_with_the_outcome(project: Project):
    module = project.write("""
        @step
        def one():
            import time
            time.sleep(1)
            return 1

        pipeline = Pipeline(name="watched", steps=[one()])
    """)
    execution = project.run("run", module, "--detach").stdout.strip()
    proc = project.run("status", execution, "--watch")
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"one: Succeeded attempt 1 after \d", proc.stderr), proc.stderr
    assert "Succeeded" in proc.stdout


def test_run_logs_streams_each_steps_output_in_a_pipe(project: Project):
    module = project.write(BOOM)
    proc = project.run("run", module, "--logs")
    assert proc.returncode == 1
    assert "crunch | crunching" in proc.stderr, proc.stderr
    assert "crunch | ValueError: boom at 6" in proc.stderr
    assert "| crunching" not in project.run("run", module).stderr  # off by default in a pipe


def test_dependency_installation_is_in_the_step_log(project: Project, tmp_path: Path):
    wheel = make_wheel(tmp_path, "stepflow_cli_dep", "VALUE = 7\n")
    (project.dir / "requirements.txt").write_text(f"--no-index\n{wheel}\n")
    module = project.write("""
        @step(dependencies="requirements.txt")
        def uses():
            import stepflow_cli_dep
            return stepflow_cli_dep.VALUE

        pipeline = Pipeline(name="deps", steps=[uses()])
    """)
    proc = project.run("run", module, "-o", "json")
    assert proc.returncode == 0, proc.stderr
    execution = json.loads(proc.stdout)["executionId"]
    log = project.run("logs", execution, "uses").stdout
    assert "stepflow: dependencies from requirements.txt: installing into" in log, log
    assert "Successfully installed stepflow-cli-dep-1.0" in log or "Processing" in log, log
    again = json.loads(project.run("run", module, "-o", "json").stdout)["executionId"]
    assert "dependencies from requirements.txt: reusing" in project.run("logs", again, "uses").stdout


def test_a_local_package_imported_in_a_step_body_is_caught_at_validate(project: Project):
    (project.dir / "helpers").mkdir()
    (project.dir / "helpers" / "__init__.py").write_text("def double(x):\n    return 2 * x\n")
    module = project.write("""
        @step
        def local():
            from helpers import double
            return double(2)

        pipeline = Pipeline(name="local", steps=[local()])
    """)
    line = project.line_of(module, "from helpers import")
    proc = project.run("validate", module)
    assert proc.returncode == 1
    assert f"error (LocalModuleNotShipped): flow.py:{line}: Step 'local' imports 'helpers'" in proc.stderr
    assert "include_local_workdir=True" in proc.stderr and "Traceback" not in proc.stderr
    shipped = project.write("""
        @step(include_local_workdir=True)
        def local():
            from helpers import double
            return double(2)

        pipeline = Pipeline(name="local", steps=[local()])
    """, "shipped.py")
    run = project.run("run", shipped, "-o", "json")
    assert run.returncode == 0, run.stderr


def test_a_missing_module_at_run_time_says_how_to_fix_it(project: Project):
    module = project.write("""
        @step
        def needs():
            import stepflow_no_such_module_anywhere
            return 1

        pipeline = Pipeline(name="needs", steps=[needs()])
    """)
    proc = project.run("run", module, "-o", "json")
    assert proc.returncode == 1
    reason = json.loads(proc.stdout)["steps"][0]["failureReason"]
    assert reason.startswith("ModuleNotFoundError: No module named 'stepflow_no_such_module_anywhere'")
    assert "@step(include_local_workdir=True)" in reason and "dependencies" in reason


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux shows what a terminal shows")
def test_live_view_shows_the_running_steps_output_under_the_table(project: Project, tmp_path: Path):
    gate = tmp_path / "gate"
    module = project.write(f"""
        @step
        def chatty():
            import os, time
            for i in range(3):
                print(f"epoch {{i}} loss {{1.0 / (i + 1):.3f}}", flush=True)
            while not os.path.exists({str(gate)!r}):
                time.sleep(0.05)
            return 1

        pipeline = Pipeline(name="chatty", steps=[chatty()])
    """)
    session = f"stepflow-live-{tmp_path.name}"
    env = " ".join(f"{k}={v!r}" for k, v in project.env.items() if k.startswith("STEPFLOW_"))
    command = f"cd {project.dir} && env {env} {STEPFLOW_BIN} run {module}; sleep 30"
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "160", "-y", "30", command], check=True)
    try:
        def screen() -> str:
            return subprocess.run(["tmux", "capture-pane", "-p", "-t", session], capture_output=True,
                                  text=True).stdout

        wait_for(lambda: "epoch 2 loss 0.333" in screen(), timeout=60,
                 message="the step's output never appeared under the live table")
        shown = screen()
        assert "chatty (attempt 1)" in shown and "Executing" in shown, shown
        gate.touch()
        wait_for(lambda: "chatty/" in screen() and "Succeeded" in screen(), timeout=60,
                 message="the run did not end")
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)



