"""Executions as SageMaker code sees them: SageMaker-shaped ARNs, attaching by ARN,
``sagemaker_client``'s pipeline calls, and stores holding the legacy ARN shape."""

from __future__ import annotations

import json
import re
import textwrap

import pytest

from stepflow import layout
from stepflow.backends.local import LocalBackend
from stepflow.compiler.loader import load_pipeline
from stepflow.errors import ValidationError
from stepflow.session import Session
from stepflow.workflow.pipeline_context import PipelineSession
from stepflow.workflow.pipeline_execution import _PipelineExecution

PROGRAM = """
import stepflow
from stepflow.workflow.function_step import step
from stepflow.workflow.pipeline import Pipeline
from stepflow.workflow.pipeline_context import PipelineSession

session = PipelineSession()
region = session.boto_region_name

@step
def train(rate: float):
    return {"rate": rate, "region": region}

pipeline = Pipeline(name="arnprobe", steps=[train(0.5)], sagemaker_session=session)
"""

EXECUTION_ARN = re.compile(
    r"arn:aws:sagemaker:eu-west-1:000000000000:pipeline/arnprobe/execution/[0-9a-z-]+")


@pytest.fixture
def pipeline(clean_env, tmp_path):
    clean_env.setenv("AWS_REGION", "eu-west-1")
    path = tmp_path / "arnprobe_program.py"
    path.write_text(textwrap.dedent(PROGRAM))
    pipeline = load_pipeline(str(path))
    assert isinstance(pipeline.session, PipelineSession)
    return pipeline


def test_arns_are_sagemakers_and_an_execution_attaches_by_arn(pipeline):
    created = pipeline.upsert()
    assert created["PipelineArn"] == "arn:aws:sagemaker:eu-west-1:000000000000:pipeline/arnprobe"
    execution = pipeline.start()
    assert EXECUTION_ARN.fullmatch(execution.arn)
    assert execution.wait(timeout=120)["PipelineExecutionStatus"] == "Succeeded"

    # A notebook's later cell: attach with nothing but the ARN and a fresh session.
    attached = _PipelineExecution(arn=execution.arn, sagemaker_session=Session())
    assert attached.describe()["PipelineExecutionArn"] == execution.arn
    assert attached.describe()["PipelineArn"] == created["PipelineArn"]
    assert attached.result("train") == {"rate": 0.5, "region": "eu-west-1"}
    assert [s["StepName"] for s in attached.list_steps()] == ["train"]

    client = Session().sagemaker_client
    assert client.describe_pipeline(PipelineName=created["PipelineArn"])["PipelineName"] == "arnprobe"
    described = client.describe_pipeline_execution(PipelineExecutionArn=execution.arn)
    assert described["PipelineExecutionStatus"] == "Succeeded"
    steps = client.list_pipeline_execution_steps(PipelineExecutionArn=execution.arn)
    assert [s["StepName"] for s in steps["PipelineExecutionSteps"]] == ["train"]
    summaries = client.list_pipeline_executions(PipelineName="arnprobe")["PipelineExecutionSummaries"]
    assert [s["PipelineExecutionArn"] for s in summaries] == [execution.arn]


def test_start_through_sagemaker_client(pipeline):
    pipeline.upsert()
    client = pipeline.session.sagemaker_client
    started = client.start_pipeline_execution(PipelineName="arnprobe",
                                              PipelineExecutionDisplayName="from-client")
    assert EXECUTION_ARN.fullmatch(started["PipelineExecutionArn"])
    execution = _PipelineExecution(started["PipelineExecutionArn"], pipeline.session)
    assert execution.wait(timeout=120)["PipelineExecutionStatus"] == "Succeeded"
    assert execution.describe()["PipelineExecutionDisplayName"] == "from-client"


def test_a_store_with_legacy_arns_stays_readable(pipeline):
    """Records written before the SageMaker shape: still read, upgraded on the next upsert."""
    pipeline.upsert()
    backend = pipeline.session.backend
    assert isinstance(backend, LocalBackend)
    key = layout.in_pipeline("arnprobe", layout.pipeline_record_key())
    record = json.loads(backend.store.get_bytes(key))
    record["PipelineArn"] = "stepflow:local:pipeline/arnprobe"
    backend.store.put_bytes(key, json.dumps(record).encode())
    old = backend.create_execution("arnprobe", execution_id="20261101t000000-aaaaaa")
    assert EXECUTION_ARN.fullmatch(str(old.execution_arn))  # new executions: SageMaker's shape

    legacy = "stepflow:local:pipeline/arnprobe/execution/20261101t000000-aaaaaa"
    attached = _PipelineExecution(arn=legacy, sagemaker_session=pipeline.session)
    assert attached.describe()["PipelineExecutionStatus"] == "Executing"
    assert attached.arn == legacy

    pipeline.upsert()
    assert backend.describe("arnprobe")["PipelineArn"] == (
        "arn:aws:sagemaker:eu-west-1:000000000000:pipeline/arnprobe")


def test_attaching_needs_an_execution_arn(clean_env):
    with pytest.raises(ValidationError, match="is a pipeline ARN"):
        _PipelineExecution(arn="arn:aws:sagemaker:us-east-1:000000000000:pipeline/p")
    with pytest.raises(ValidationError, match="not a pipeline or pipeline execution ARN"):
        _PipelineExecution(arn="p/execution/e")
