"""Listing pipelines, deleting executions and pipelines, the run history limit, `doctor`,
hints that work when pasted, and executions whose orchestrator died."""

from __future__ import annotations

import json
import shlex
import signal
from pathlib import Path

import pytest
from tests.cli.project import Project
from tests.testenv import wait_for

TWO = """
@step
def ok():
    return 1

@step
def broken():
    raise RuntimeError("broken on purpose")

good = Pipeline(name="good", steps=[ok()])
bad = Pipeline(name="bad", steps=[broken()])
"""


def store_path(project: Project) -> Path:
    return Path(project.store.removeprefix("file://"))


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return Project(tmp_path)


def test_pipelines_lists_each_with_its_latest_execution(project: Project):
    module = project.write(TWO)
    first = json.loads(project.run("run", f"{module}:good", "-o", "json").stdout)["executionId"]
    second = json.loads(project.run("run", f"{module}:good", "-o", "json").stdout)["executionId"]
    project.run("run", f"{module}:bad")
    rows = {r["name"]: r for r in json.loads(project.run("pipelines", "-o", "json").stdout)}
    assert set(rows) == {"good", "bad"}
    assert rows["good"]["steps"] == 1 and rows["good"]["executions"] == 2
    assert rows["good"]["lastExecution"]["executionId"] == second != first
    assert rows["bad"]["lastExecution"]["status"] == "Failed"
    table = project.run("get", "pipelines").stdout.splitlines()
    assert table[0].split() == ["NAME", "MANIFEST", "STEPS", "LAST", "EXECUTION", "STATUS", "STARTED", "MESSAGE"]
    bad = next(line for line in table if line.startswith("bad "))
    assert "Failed" in bad and "RuntimeError: broken on purpose" in bad


def test_delete_an_execution_removes_its_folder_and_refuses_a_running_one(project: Project, tmp_path: Path):
    module = project.write(TWO)
    execution = json.loads(project.run("run", f"{module}:good", "-o", "json").stdout)["executionId"]
    folder = store_path(project) / "good" / execution
    assert folder.is_dir()
    proc = project.run("delete", "execution", execution)
    assert proc.returncode == 0, proc.stderr
    assert f"deleted good/{execution}" in proc.stdout
    assert not folder.exists()
    assert project.run("executions").stdout == ""
    assert project.run("status", execution).returncode == 1

    marker = tmp_path / "started"
    slow = project.write(f"""
        @step
        def slow():
            import time
            open({str(marker)!r}, "w").close()
            time.sleep(120)

        pipeline = Pipeline(name="slow", steps=[slow()])
    """, "slow.py")
    running = project.run("run", slow, "--detach").stdout.strip()
    wait_for(marker.exists, timeout=120, message="the step never started")
    refused = project.run("delete", "execution", running)
    assert refused.returncode == 1
    assert f"is Executing: stop it first (`stepflow stop {running}`)" in refused.stderr
    assert project.run("stop", running).returncode == 0
    assert project.run("delete", "execution", running).returncode == 0


def test_delete_a_pipeline_removes_everything_after_confirmation(project: Project):
    module = project.write(TWO)
    project.run("run", f"{module}:good")
    unconfirmed = project.run("delete", "pipeline", "good")
    assert unconfirmed.returncode == 1 and "pass --yes to confirm" in unconfirmed.stderr
    assert (store_path(project) / "good").exists()
    proc = project.run("delete", "pipeline", "good", "--yes")
    assert proc.returncode == 0, proc.stderr
    assert not (store_path(project) / "good").exists()
    assert project.run("pipelines", "-o", "json").stdout.strip() == "[]"


def test_run_history_limit_keeps_the_newest_executions(project: Project):
    module = project.write(TWO)
    ids = [json.loads(project.run("run", f"{module}:good", "-o", "json", "--history-limit", "2").stdout)["executionId"]
           for _ in range(3)]
    listed = [r["executionId"] for r in json.loads(project.run("executions", "-o", "json").stdout)]
    assert listed == [ids[2], ids[1]]
    assert not (store_path(project) / "good" / ids[0]).exists()


def test_doctor_checks_the_store_and_fails_on_an_unwritable_one(project: Project, tmp_path: Path):
    proc = project.run("doctor", "-o", "json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    checks = {c["name"]: c for c in json.loads(proc.stdout)}
    assert checks["store"]["status"] == "ok" and "write, read and delete work" in checks["store"]["detail"]
    assert checks["credentials"]["status"] == "skip"
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the store folder should be")
    proc = project.run("doctor", "--store", (blocked / "store").as_uri())
    assert proc.returncode == 1
    store_line = next(line for line in proc.stdout.splitlines() if line.startswith("store "))
    assert " fail " in store_line, proc.stdout


def test_hints_carry_the_store_and_work_when_pasted(tmp_path: Path):
    project = Project(tmp_path, store_in_env=False)  # the store is given only by --store
    module = project.write(TWO)
    proc = project.run("run", f"{module}:bad", "--store", project.store)
    assert proc.returncode == 1
    hint = next(line for line in proc.stdout.splitlines() if "see: stepflow logs" in line).split("see: ", 1)[1]
    assert f"--store {project.store}" in hint
    pasted = project.run(*shlex.split(hint)[1:])
    assert pasted.returncode == 0 and "broken on purpose" in pasted.stdout, pasted.stderr
    missing = project.run("status", "nope", "--store", project.store)
    assert f"`stepflow executions --store {project.store}`" in missing.stderr


def test_bad_store_is_blamed_on_the_option_that_gave_it(project: Project):
    proc = project.run("executions", "--store", "gs://bucket/x")
    assert proc.returncode == 2
    assert "Invalid value for --store" in proc.stderr and "STEPFLOW_S3_ROOT_URI" not in proc.stderr


def test_an_execution_whose_orchestrator_died_says_so_and_how_to_finish_it(project: Project, tmp_path: Path):
    marker = tmp_path / "started"
    module = project.write(f"""
        @step
        def slow():
            import time
            open({str(marker)!r}, "w").close()
            time.sleep(3)
            return 1

        pipeline = Pipeline(name="orphan", steps=[slow()])
    """)
    proc = project.popen("run", module)
    try:
        wait_for(marker.exists, timeout=120, message="the step never started")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        proc.kill()
        proc.communicate()
    listed = project.run("executions")
    assert "Executing (no orchestrator)" in listed.stdout and "finish it: stepflow resume " in listed.stdout
    execution = json.loads(project.run("executions", "-o", "json").stdout)[0]
    assert execution["orphaned"] is True
    status = project.run("status", execution["executionId"])
    assert status.returncode == 4 and f"stepflow resume {execution['executionId']}" in status.stderr
    assert project.run("resume", execution["executionId"]).returncode == 0
