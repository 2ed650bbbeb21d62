"""The description of each attempt's job (``backends.job_descriptions``): SageMaker's
DescribeProcessingJob / DescribeTrainingJob answer, checked against botocore's model of
it, written by the orchestrator's book as the job's status changes, and located for the
expressions that read it."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import botocore.session
import pytest
from botocore.validate import ParamValidator

from stepflow import layout
from stepflow.backends.job_descriptions import JOB_STATUS, REPORTED, JobBook, describe, job_arn
from stepflow.backends.kubernetes.jobspec import job_name as kubernetes_job_name
from stepflow.engine import (
    AttemptFailed,
    AttemptRunning,
    AttemptStarted,
    AttemptStopped,
    AttemptStopping,
    AttemptSucceeded,
    ConditionEvaluated,
    ExecutionState,
    Plan,
    apply_all,
    decide,
    execution_context,
    new_execution,
    resolve,
    retry,
    select,
)
from stepflow.k8s_names import job_name
from stepflow.storage import open_store
from stepflow.workflow.callsite import set_project_root
from stepflow.workflow.condition_step import ConditionStep
from stepflow.workflow.conditions import ConditionEquals
from stepflow.workflow.fail_step import FailStep
from stepflow.workflow.function_step import step
from stepflow.workflow.pipeline import Pipeline
from stepflow.workflow.processing import ProcessingOutput, ScriptProcessor
from stepflow.workflow.steps import ProcessingStep

T0 = datetime(2026, 12, 1, 4, 0, 0, 123456, tzinfo=UTC)
EXECUTION_ARN = "arn:aws:sagemaker:eu-west-1:000000000000:pipeline/jobs/execution/20261201t040000-abc123"
EXECUTION = "20261201t040000-abc123"
_MODEL = botocore.session.get_session().get_service_model("sagemaker")


def _output_shape(step_type: str) -> Any:
    return _MODEL.operation_model(f"Describe{step_type}Job").output_shape


def _check_shape(value: Any, shape: Any, where: str = "") -> None:
    """botocore's own validation (types, required members, lengths), then what it leaves
    out: enums and patterns of every string."""
    if not where:
        report = ParamValidator().validate(value, shape)
        assert not report.has_errors(), report.generate_report()
    if shape.type_name == "structure":
        for key, item in value.items():
            _check_shape(item, shape.members[key], f"{where}.{key}")
    elif shape.type_name == "list":
        for i, item in enumerate(value):
            _check_shape(item, shape.member, f"{where}[{i}]")
    elif shape.type_name == "map":
        for key, item in value.items():
            _check_shape(item, shape.value, f"{where}[{key}]")
    elif shape.type_name == "string":
        if shape.enum:
            assert value in shape.enum, f"{where}: {value!r} is not one of {shape.enum}"
        pattern = shape.metadata.get("pattern")
        if pattern and "\\p{" not in pattern:
            assert re.fullmatch(pattern, value), f"{where}: {value!r} does not match {pattern}"


@pytest.fixture
def definition(compile_, tmp_path) -> dict:
    """A processing step, a condition on its job's status, a @step given its job's name."""
    (tmp_path / "prep.py").write_text("print('prep')\n")
    set_project_root(tmp_path)
    try:
        processor = ScriptProcessor(image_uri="python:3.12-slim", command=["python3"],
                                    role="arn:aws:iam::123456789012:role/prep", instance_type="ml.m5.large",
                                    instance_count=1, env={"DEPTH": "3"})
        prep = ProcessingStep(name="prep", step_args=processor.run(
            outputs=[ProcessingOutput(output_name="train", source="/opt/ml/processing/train")], code="prep.py",
            arguments=["--depth", "3"]))

        @step(name="use")
        def use(job: str) -> str:
            return job

        check = ConditionStep(name="check", conditions=[
            ConditionEquals(left=prep.properties.ProcessingJobStatus, right="Completed")],
            if_steps=[use(prep.properties.ProcessingJobName)], else_steps=[FailStep(name="stop")])
        return compile_(Pipeline(name="jobs", steps=[check]), s3_root_uri="s3://bucket/stepflow").definition
    finally:
        set_project_root(None)


def _state(plan: Plan, *events: Any, at: datetime = T0) -> ExecutionState:
    state = new_execution(plan, execution_id=EXECUTION, pipeline_name="jobs", parameters={}, now=T0,
                          execution_arn=EXECUTION_ARN)
    return apply_all(plan, state, events, at)


PREP_JOB = "s3://bucket/stepflow/jobs/prep-job.json"


def _arguments(plan: Plan, state: ExecutionState, name: str) -> dict:
    """The step's arguments evaluated (the @step's read prep's job: its description given)."""
    documents = {PREP_JOB: {"ProcessingJobName": job_name(EXECUTION, "prep", 1)}}
    return resolve(dict(plan.step(name).arguments),
                   execution_context(plan, state, documents, T0, jobs={"prep": PREP_JOB}))


@pytest.mark.parametrize("events, status", [
    ((AttemptStarted("prep", 1),), "InProgress"),
    ((AttemptStarted("prep", 1), AttemptRunning("prep", 1), AttemptStopping("prep", 1)), "Stopping"),
    ((AttemptStarted("prep", 1), AttemptSucceeded("prep", 1)), "Completed"),
    ((AttemptStarted("prep", 1), AttemptFailed("prep", 1, "AlgorithmError: exit 2", "User", 2)), "Failed"),
    ((AttemptStarted("prep", 1), AttemptStopping("prep", 1), AttemptStopped("prep", 1)), "Stopped"),
])
def test_a_processing_job_is_described_in_the_shape_of_describe_processing_job(definition, events, status):
    plan = Plan.from_definition(definition)
    state = _state(plan, *events)
    attempt = state.steps["prep"].attempts[0]
    arguments = _arguments(plan, state, "prep")
    name = job_name(EXECUTION, "prep", 1)
    described = describe("Processing", attempt, arguments, name=name, arn=job_arn("Processing", EXECUTION_ARN, name))
    _check_shape(described, _output_shape("Processing"))
    assert described["ProcessingJobStatus"] == status == JOB_STATUS[attempt.status]
    assert described["ProcessingJobName"] == name == kubernetes_job_name(EXECUTION, "prep", 1)  # the Job's name
    assert described["ProcessingJobArn"] == f"arn:aws:sagemaker:eu-west-1:000000000000:processing-job/{name}"
    assert described["ProcessingOutputConfig"] == arguments["ProcessingOutputConfig"]
    assert described["AppSpecification"]["ImageUri"] == "python:3.12-slim"
    assert described["CreationTime"] == described["ProcessingStartTime"] == "2026-12-01T04:00:00.123Z"
    assert ("FailureReason" in described) == (status == "Failed")
    assert ("ProcessingEndTime" in described) == (status in ("Completed", "Failed", "Stopped"))
    assert set(described) - set(arguments) <= REPORTED["Processing"]


def test_a_training_job_is_described_with_its_model_location(definition):
    plan = Plan.from_definition(definition)
    state = _state(plan, AttemptStarted("prep", 1), AttemptSucceeded("prep", 1), ConditionEvaluated("check", True),
                   AttemptStarted("use", 1))
    state = apply_all(plan, state, [AttemptSucceeded("use", 1)], T0 + timedelta(seconds=90))
    attempt = state.steps["use"].attempts[0]
    arguments = _arguments(plan, state, "use")
    name = job_name(EXECUTION, "use", 1)
    described = describe("Training", attempt, arguments, name=name, arn=job_arn("Training", EXECUTION_ARN, name))
    _check_shape(described, _output_shape("Training"))
    assert job_name(EXECUTION, "prep", 1) in arguments["AlgorithmSpecification"]["ContainerArguments"]
    output = arguments["OutputDataConfig"]["S3OutputPath"]
    assert output.endswith(f"/jobs/{EXECUTION}/use/results")
    assert described["ModelArtifacts"] == {"S3ModelArtifacts": f"{output}/{name}/output/model.tar.gz"}
    assert (described["TrainingJobStatus"], described["SecondaryStatus"]) == ("Completed", "Completed")
    assert described["TrainingJobArn"] == f"arn:aws:sagemaker:eu-west-1:000000000000:training-job/{name}"
    assert described["TrainingTimeInSeconds"] == 90
    assert set(described) - set(arguments) <= REPORTED["Training"]


@pytest.mark.parametrize("seconds, billed", [(0.2, 1), (1.5, 2)])
def test_a_training_job_shorter_than_a_second_still_reports_one(definition, seconds, billed):
    """SageMaker's model says TrainingTimeInSeconds >= 1: a quick @step must not break the shape."""
    plan = Plan.from_definition(definition)
    state = _state(plan, AttemptStarted("prep", 1), AttemptSucceeded("prep", 1), ConditionEvaluated("check", True),
                   AttemptStarted("use", 1))
    state = apply_all(plan, state, [AttemptSucceeded("use", 1)], T0 + timedelta(seconds=seconds))
    name = job_name(EXECUTION, "use", 1)
    described = describe("Training", state.steps["use"].attempts[0], _arguments(plan, state, "use"), name=name,
                         arn=job_arn("Training", EXECUTION_ARN, name))
    _check_shape(described, _output_shape("Training"))
    assert described["TrainingTimeInSeconds"] == billed


def test_what_the_job_reports_are_names_sagemaker_knows():
    for step_type, names in REPORTED.items():
        assert names <= set(_output_shape(step_type).members), step_type


def test_the_book_writes_each_change_before_it_is_read_and_locates_the_latest_job(definition, tmp_path):
    plan = Plan.from_definition(definition)
    store = open_store(f"file://{tmp_path / 'store'}")
    state = _state(plan)

    def evaluate(state: ExecutionState, value: Any) -> Any:
        return resolve(value, execution_context(plan, state, {}, T0))

    book = JobBook(store, plan, state)
    assert book.uris(state) == {}  # prep has not run a job yet

    def stored(attempt: int) -> dict:
        return json.loads(store.get_bytes(layout.job_description_key(EXECUTION, "prep", attempt)))

    state = apply_all(plan, state, [AttemptStarted("prep", 1)], T0)
    book.record(state, evaluate)
    first = stored(1)
    assert first["ProcessingJobStatus"] == "InProgress"
    # Container arguments and environment as the job gets them: text.
    assert first["AppSpecification"]["ContainerArguments"] == ["--depth", "3"]
    assert first["Environment"] == {"DEPTH": "3"}
    state = apply_all(plan, state, [AttemptFailed("prep", 1, "NodeLost", "Infrastructure")], T0)
    book.record(state, evaluate)
    assert (stored(1)["ProcessingJobStatus"], stored(1)["FailureReason"]) == ("Failed", "NodeLost")

    state = apply_all(plan, state, decide(plan, state, {}, T0).events, T0)  # the execution fails
    state = apply_all(plan, retry(plan, state, T0), [AttemptStarted("prep", 2), AttemptSucceeded("prep", 2)], T0)
    book.record(state, evaluate)
    assert stored(2)["ProcessingJobStatus"] == "Completed" and stored(1)["ProcessingJobStatus"] == "Failed"
    # The condition and the @step read prep's job: its latest attempt's.
    assert book.uris(state) == {"prep": store.uri(layout.job_description_key(EXECUTION, "prep", 2))}
    store.put_bytes(layout.execution_state_key(EXECUTION), state.to_json().encode())

    # A selective execution reusing prep reads the job of the execution that ran it.
    rerun = select(plan, new_execution(plan, execution_id="again", pipeline_name="jobs", parameters={}, now=T0),
                   state, ["check"])
    assert JobBook(store, plan, rerun).uris(rerun) == book.uris(state)
