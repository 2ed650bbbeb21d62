"""The sagemaker backend through the Python API, against moto's SageMaker (server mode).

Ported SageMaker code: ``pipeline.upsert(role_arn=...)`` and ``pipeline.start()``, with the
backend chosen by the configuration only. Every request goes through botocore with its
parameter validation on, so one the real API would refuse fails the test.
"""

from __future__ import annotations

import json

import pytest
from tests.testenv.moto import MOTO_LACKS

from stepflow.backends.sagemaker import SageMakerBackend
from stepflow.engine import ParameterError
from stepflow.errors import BackendError, ConfigurationError
from stepflow.session import Session


def _expressions_as_text(value):
    """A definition's expressions (``Get``, ``Std:Join``, ...) as the strings SageMaker puts there."""
    if isinstance(value, dict):
        if len(value) == 1 and next(iter(value)) in ("Get", "Std:Join", "Std:JsonGet"):
            return "resolved-at-run-time"
        return {k: _expressions_as_text(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_expressions_as_text(v) for v in value]
    return value


def _check_steps_against_botocore(definition: dict) -> None:
    """Each Training step's Arguments are a CreateTrainingJob request SageMaker would accept
    (botocore's model; the service adds the job name)."""
    import botocore.session
    from botocore.validate import ParamValidator

    shape = botocore.session.get_session().get_service_model("sagemaker").operation_model(
        "CreateTrainingJob").input_shape
    training = [s for s in definition["Steps"] if s["Type"] == "Training"]
    assert training
    for step in training:
        request = {"TrainingJobName": "pipelines-x", **_expressions_as_text(step["Arguments"])}
        report = ParamValidator().validate(request, shape)
        assert not report.has_errors(), f"{step['Name']}: {report.generate_report()}"


def _backend(pipeline) -> SageMakerBackend:
    backend = pipeline.session.backend
    assert isinstance(backend, SageMakerBackend)
    assert backend.client.meta.config.parameter_validation is True
    return backend


def test_moto_lacks_exactly_the_calls_we_stub(moto) -> None:
    """The pinned moto answers the calls we test against it and lacks the ones we stub."""
    client = moto.client()
    client.create_pipeline(PipelineName="probe", PipelineDefinition='{"Version": "2020-12-01", "Steps": []}',
                           RoleArn="arn:aws:iam::123456789012:role/r")
    arn = client.start_pipeline_execution(PipelineName="probe")["PipelineExecutionArn"]
    assert client.describe_pipeline_execution(PipelineExecutionArn=arn)["PipelineExecutionArn"] == arn
    lacking = {
        "ListPipelineExecutionSteps": lambda: client.list_pipeline_execution_steps(PipelineExecutionArn=arn),
        "StopPipelineExecution": lambda: client.stop_pipeline_execution(PipelineExecutionArn=arn,
                                                                        ClientRequestToken="t" * 32),
        "RetryPipelineExecution": lambda: client.retry_pipeline_execution(PipelineExecutionArn=arn,
                                                                          ClientRequestToken="t" * 32),
    }
    assert tuple(lacking) == MOTO_LACKS
    for name, call in lacking.items():
        with pytest.raises(Exception) as caught:
            call()
        assert "500" in str(caught.value), f"moto now implements {name}: test it against moto instead"
    assert "has not been implemented" in moto.logs_tail(200)


def test_upsert_create_unchanged_update_start_describe(moto, config_env, write_pipeline, call_log,
                                                       role_arn) -> None:
    config_env("""
        SchemaVersion: "1.0"
        Stepflow:
          Backend: sagemaker
    """)
    pipeline = write_pipeline(factor=1)
    backend = _backend(pipeline)
    calls = call_log(backend.client)
    sm = moto.client()

    arn = pipeline.upsert(role_arn=role_arn, description="churn model",
                          tags=[{"Key": "team", "Value": "ml"}])["PipelineArn"]
    assert arn == f"arn:aws:sagemaker:{moto.region}:{moto.account}:pipeline/churn"
    assert "CreatePipeline" in calls.names and "UpdatePipeline" not in calls.names
    described = sm.describe_pipeline(PipelineName="churn")
    assert json.loads(described["PipelineDefinition"]) == json.loads(pipeline.definition())
    _check_steps_against_botocore(json.loads(described["PipelineDefinition"]))
    assert described["RoleArn"] == role_arn
    assert described["PipelineDescription"] == "churn model"
    assert described["PipelineDisplayName"] == "churn"
    assert {"Key": "team", "Value": "ml"} in sm.list_tags(ResourceArn=arn)["Tags"]

    calls.clear()
    assert pipeline.upsert(role_arn=role_arn, description="churn model")["PipelineArn"] == arn
    assert "DescribePipeline" in calls.names
    assert not {"CreatePipeline", "UpdatePipeline"} & set(calls.names), calls.names

    changed = write_pipeline(factor=3)
    changed.session.backend = backend  # the same client, so its calls are logged
    calls.clear()
    changed.upsert(role_arn=role_arn)
    assert "UpdatePipeline" in calls.names and "CreatePipeline" not in calls.names
    assert json.loads(sm.describe_pipeline(PipelineName="churn")["PipelineDefinition"]) == \
        json.loads(changed.definition())

    execution = changed.start(parameters={"n": 7, "label": "run1"}, execution_display_name="first-run")
    execution_arn = backend.execution_arn("churn", execution.execution_id)
    assert execution_arn == f"{arn}/execution/{execution.execution_id}"  # SageMaker's own id
    given = sm.list_pipeline_parameters_for_execution(PipelineExecutionArn=execution_arn)["PipelineParameters"]
    assert {p["Name"]: p["Value"] for p in given} == {"n": "7", "label": "run1"}
    assert sm.describe_pipeline_execution(PipelineExecutionArn=execution_arn)["PipelineExecutionDisplayName"] \
        == "first-run"

    described = execution.describe()
    assert described["PipelineExecutionArn"] == execution_arn
    assert described["PipelineExecutionDisplayName"] == "first-run"
    assert described["PipelineExecutionStatus"] == "Succeeded"  # moto ends executions at once
    assert {"Name": "n", "Value": "7"} in described["Parameters"]


def test_typed_parameters_checked_before_sagemaker_is_called(moto, config_env, write_pipeline, call_log,
                                                             role_arn) -> None:
    config_env('SchemaVersion: "1.0"\nStepflow:\n  Backend: sagemaker\n')
    pipeline = write_pipeline()
    pipeline.upsert(role_arn=role_arn)
    calls = call_log(_backend(pipeline).client)
    with pytest.raises(ParameterError, match="n"):
        pipeline.start(parameters={"n": "seven"})
    assert "StartPipelineExecution" not in calls.names


def test_backend_from_environment_and_role_from_config(moto, config_env, write_pipeline, monkeypatch,
                                                       role_arn) -> None:
    config_env(f"""
        SchemaVersion: "1.0"
        SageMaker:
          Pipeline:
            RoleArn: {role_arn}
    """)
    monkeypatch.setenv("STEPFLOW_BACKEND", "sagemaker")
    pipeline = write_pipeline(name="from-env")
    pipeline.upsert()
    assert moto.client().describe_pipeline(PipelineName="from-env")["RoleArn"] == role_arn


def test_create_execution_parallelism_display_name_and_idempotency(moto, sagemaker_front, config_env,
                                                                   write_pipeline, role_arn) -> None:
    """What the operator calls: our id → one SageMaker execution, however often it is asked."""
    sagemaker_front.answer("ListPipelineExecutionSteps", {"PipelineExecutionSteps": []})
    config_env('SchemaVersion: "1.0"\nStepflow:\n  Backend: sagemaker\n')
    pipeline = write_pipeline()
    pipeline.upsert(role_arn=role_arn)
    backend = _backend(pipeline)
    state = backend.create_execution("churn", parameters={"n": 3}, execution_id="churn-abc1234.x",
                                     parallelism=2)
    again = backend.create_execution("churn", parameters={"n": 3}, execution_id="churn-abc1234.x")
    assert again.execution_arn == state.execution_arn
    executions = moto.client().list_pipeline_executions(PipelineName="churn")["PipelineExecutionSummaries"]
    assert len(executions) == 1
    described = moto.client().describe_pipeline_execution(PipelineExecutionArn=state.execution_arn)
    assert described["ParallelismConfiguration"] == {"MaxParallelExecutionSteps": 2}
    assert described["PipelineExecutionDisplayName"] == "churn-abc1234-x"
    assert state.parameters == {"n": 3, "label": "base"}
    # A new process (a restarted operator) finds it from the store's record.
    fresh = SageMakerBackend(Session().store)
    assert fresh.execution_arn("churn", "churn-abc1234.x") == state.execution_arn
    assert fresh.result_uri("churn", "churn-abc1234.x", "total").endswith(
        f"/churn/{state.execution_arn.rsplit('/', 1)[-1]}/total/results")


def test_missing_role_is_a_user_error_naming_every_fix(moto, config_env, write_pipeline) -> None:
    config_env('SchemaVersion: "1.0"\nStepflow:\n  Backend: sagemaker\n')
    with pytest.raises(ConfigurationError) as caught:
        write_pipeline().upsert()
    assert caught.value.reason == "SageMakerRoleMissing"
    assert "spec.sagemaker.roleArn" in str(caught.value) and "role_arn=" in str(caught.value)


def test_describe_unknown_pipeline(moto, config_env, write_pipeline) -> None:
    config_env('SchemaVersion: "1.0"\nStepflow:\n  Backend: sagemaker\n')
    with pytest.raises(BackendError) as caught:
        write_pipeline(name="nobody").describe()
    assert caught.value.reason == "PipelineNotFound"


def test_a_ported_script_upserts_starts_and_waits(moto, sagemaker_front, config_env, write_pipeline,
                                                  role_arn) -> None:
    """``upsert()`` + ``start()`` + ``wait()`` + ``list_steps()``, as with the SageMaker SDK."""
    from datetime import UTC, datetime

    t0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    sagemaker_front.answer("ListPipelineExecutionSteps", {"PipelineExecutionSteps": [
        {"StepName": "total", "StepStatus": "Succeeded", "StartTime": t0, "EndTime": t0, "AttemptCount": 1},
        {"StepName": "make", "StepStatus": "Succeeded", "StartTime": t0, "EndTime": t0, "AttemptCount": 1}]})
    config_env('SchemaVersion: "1.0"\nStepflow:\n  Backend: sagemaker\n')
    pipeline = write_pipeline()
    pipeline.upsert(role_arn=role_arn)
    execution = pipeline.start(parameters={"n": 2})
    assert execution.wait(delay=1, max_attempts=60)["PipelineExecutionStatus"] == "Succeeded"
    # SageMaker's order, newest first, as the SDK returns it
    assert [(s["StepName"], s["StepStatus"]) for s in execution.list_steps()] == \
        [("total", "Succeeded"), ("make", "Succeeded")]
    assert [op for op, _ in sagemaker_front.requests] == ["ListPipelineExecutionSteps"] * 2
