"""`stepflow retry EXEC` as a real process over a real store: failed steps run again,
succeeded ones keep their results (SageMaker's RetryPipelineExecution, `argo retry`)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.cli.test_executions import Project


def test_retry_reruns_the_failed_step_and_reuses_what_succeeded(tmp_path):
    project = Project(tmp_path)
    runs_log, fixed = tmp_path / "prepare-runs", tmp_path / "fixed"
    module = project.write(f"""
        @step
        def prepare():
            with open({str(runs_log)!r}, "a") as f:
                f.write("ran\\n")
            return [1, 2, 3]

        @step
        def train(data):
            import os
            if not os.path.exists({str(fixed)!r}):
                raise RuntimeError("the feature store is down")
            return sum(data)

        pipeline = Pipeline(name="retryable", steps=[train(prepare())])
    """)
    first = project.execute(module)
    assert first["status"] == "Failed"
    execution = first["executionId"]

    Path(fixed).touch()
    proc = project.run("retry", execution, "-o", "json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["executionId"] == execution and data["status"] == "Succeeded"
    steps = {s["name"]: s for s in data["steps"]}
    assert steps["prepare"]["attempts"] == 1 and steps["train"]["attempts"] == 2
    assert runs_log.read_text() == "ran\n"  # prepare did not run again
    result = project.run("result", execution, "train")
    assert result.returncode == 0 and result.stdout.strip() == "6"
    logs = project.run("logs", execution, "train", "--attempt", "1")
    assert "the feature store is down" in logs.stdout  # the first attempt's log is kept

    again = project.run("retry", execution)
    assert again.returncode == 1
    assert "is Succeeded; only a Failed or Stopped execution can be retried" in again.stderr
