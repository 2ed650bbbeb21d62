"""``stepflow run --backend sagemaker`` as a user runs it: a real process against moto's SageMaker,
with ListPipelineExecutionSteps (which moto lacks) answered by the validated front."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path

STEPFLOW = str(Path(sys.executable).with_name("stepflow"))
ROLE = "arn:aws:iam::123456789012:role/stepflow-pipelines"

MODULE = '''
from stepflow.workflow.function_step import step
from stepflow.workflow.parameters import ParameterInteger
from stepflow.workflow.pipeline import Pipeline

n = ParameterInteger(name="n", default_value=5)


@step(name="make", role="arn:aws:iam::123456789012:role/stepflow-jobs")
def make(n: int) -> list:
    return list(range(n))


pipeline = Pipeline(name="cli-run", parameters=[n], steps=[make(n)])
'''


def test_run_on_sagemaker_upserts_starts_and_reports(tmp_path, sagemaker_front, moto) -> None:
    t0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    sagemaker_front.answer("ListPipelineExecutionSteps", {"PipelineExecutionSteps": [
        {"StepName": "make", "StepStatus": "Succeeded", "StartTime": t0, "EndTime": t0, "AttemptCount": 1}]})
    (tmp_path / "flow.py").write_text(textwrap.dedent(MODULE))
    env = {**os.environ, **sagemaker_front.env(), "STEPFLOW_S3_ROOT_URI": (tmp_path / "store").as_uri(),
           "STEPFLOW_ADMIN_CONFIG": "", "STEPFLOW_USER_CONFIG": "", "STEPFLOW_CACHE_DIR": str(tmp_path / "cache")}
    env.pop("STEPFLOW_BACKEND", None)
    done = subprocess.run([STEPFLOW, "run", "flow.py", "--backend", "sagemaker", "--role-arn", ROLE, "-p", "n=9",
                           "--parallelism", "2", "--output", "json"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["status"] == "Succeeded"
    assert [(s["name"], s["status"]) for s in data["steps"]] == [("make", "Succeeded")]
    sm = moto.client()
    assert sm.describe_pipeline(PipelineName="cli-run")["RoleArn"] == ROLE
    described = sm.describe_pipeline_execution(PipelineExecutionArn=data["executionArn"])
    assert described["ParallelismConfiguration"] == {"MaxParallelExecutionSteps": 2}
    given = sm.list_pipeline_parameters_for_execution(PipelineExecutionArn=data["executionArn"])
    assert given["PipelineParameters"] == [{"Name": "n", "Value": "9"}]
    assert moto.secret_key not in done.stdout + done.stderr


def test_retry_asks_sagemaker_to_retry_the_execution(tmp_path, sagemaker_front, moto) -> None:
    sm = moto.client()
    sm.create_pipeline(PipelineName="cli-retry", PipelineDefinition='{"Version": "2020-12-01", "Steps": []}',
                       RoleArn=ROLE)
    arn = sm.start_pipeline_execution(PipelineName="cli-retry")["PipelineExecutionArn"]
    sagemaker_front.answer("RetryPipelineExecution", {"PipelineExecutionArn": arn})
    env = {**os.environ, **sagemaker_front.env(), "STEPFLOW_S3_ROOT_URI": (tmp_path / "store").as_uri(),
           "STEPFLOW_ADMIN_CONFIG": "", "STEPFLOW_USER_CONFIG": ""}
    done = subprocess.run([STEPFLOW, "retry", "--backend", "sagemaker", f"cli-retry/{arn.rsplit('/', 1)[-1]}",
                           "--parallelism", "4"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == arn
    [(operation, params)] = sagemaker_front.requests
    assert operation == "RetryPipelineExecution" and params["PipelineExecutionArn"] == arn
    assert params["ParallelismConfiguration"] == {"MaxParallelExecutionSteps": 4}
