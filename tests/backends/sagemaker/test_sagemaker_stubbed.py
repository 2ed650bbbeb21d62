"""The sagemaker backend's calls that moto lacks, and SageMaker's failures, with botocore's Stubber.

``Stubber`` checks each expected request against botocore's SageMaker model and each
response we give it against the operation's output shape, so every answer here is one the
real API could return. moto lacks ListPipelineExecutionSteps, StopPipelineExecution and
RetryPipelineExecution (``test_sagemaker_moto.py`` proves it against the pinned version).
"""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.stub import ANY, Stubber

from stepflow.backends.sagemaker import Backoff, SageMakerBackend
from stepflow.compiler.bundle import Bundle
from stepflow.errors import BackendError, ConfigurationError
from stepflow.gitops.execution_status import execution_status
from stepflow.storage import open_store

PIPELINE_ARN = "arn:aws:sagemaker:us-east-1:123456789012:pipeline/churn"
EXECUTION_ARN = f"{PIPELINE_ARN}/execution/abc123def456"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


@pytest.fixture
def client() -> Any:
    """A real botocore client (validation on) that never reaches the network: Stubber answers."""
    return boto3.client("sagemaker", region_name="us-east-1", aws_access_key_id="AKIAEXAMPLE",
                        aws_secret_access_key=SECRET, config=Config(parameter_validation=True))


@pytest.fixture
def compiled(config_env, write_pipeline, tmp_path) -> tuple[Any, Bundle]:
    config_env('SchemaVersion: "1.0"\n')
    pipeline = write_pipeline()
    return pipeline, pipeline.session.compile(pipeline, str(tmp_path / "bundle"))


def _backend(client: Any, tmp_path, **kw: Any) -> SageMakerBackend:
    return SageMakerBackend(open_store((tmp_path / "store").as_uri()), client=client,
                            backoff=Backoff(min=0.01, max=0.05), **kw)


def _described_pipeline(definition: str) -> dict[str, Any]:
    return {"PipelineArn": PIPELINE_ARN, "PipelineName": "churn", "PipelineDefinition": definition,
            "RoleArn": "arn:aws:iam::123456789012:role/r", "PipelineStatus": "Active",
            "CreationTime": T0, "LastModifiedTime": T0}


def _described_execution(status: str, **extra: Any) -> dict[str, Any]:
    return {"PipelineArn": PIPELINE_ARN, "PipelineExecutionArn": EXECUTION_ARN, "PipelineExecutionStatus": status,
            "PipelineExecutionDisplayName": "nightly", "CreationTime": T0,
            "LastModifiedTime": T0 + timedelta(minutes=5), **extra}


def _step(name: str, status: str, *, attempts: int = 1, job: str | None = None, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"StepName": name, "StepStatus": status, "StartTime": T0, "AttemptCount": attempts, **extra}
    if status in ("Succeeded", "Failed", "Stopped"):
        out["EndTime"] = T0 + timedelta(minutes=2)
    if job:
        out["Metadata"] = {"TrainingJob": {"Arn": f"arn:aws:sagemaker:us-east-1:123456789012:training-job/{job}"}}
    return out


def _first_look(stub: Stubber, definition: str) -> None:
    """What the first call about an execution costs: the pipeline's ARN (our id is SageMaker's here)."""
    stub.add_response("describe_pipeline", _described_pipeline(definition), {"PipelineName": "churn"})


def _poll(stub: Stubber, status: str, pages: list[list[dict[str, Any]]]) -> None:
    stub.add_response("describe_pipeline_execution", _described_execution(status),
                      {"PipelineExecutionArn": EXECUTION_ARN})
    for i, page in enumerate(pages):
        response: dict[str, Any] = {"PipelineExecutionSteps": page}
        params: dict[str, Any] = {"PipelineExecutionArn": EXECUTION_ARN, "SortOrder": "Descending"}
        if i + 1 < len(pages):
            response["NextToken"] = f"page{i + 2}"
        if i:
            params["NextToken"] = f"page{i + 1}"
        stub.add_response("list_pipeline_execution_steps", response, params)


def _plan_and_parameters(stub: Stubber, definition: str) -> None:
    stub.add_response("describe_pipeline_definition_for_execution",
                      {"PipelineDefinition": definition, "CreationTime": T0}, {"PipelineExecutionArn": EXECUTION_ARN})
    stub.add_response("list_pipeline_parameters_for_execution",
                      {"PipelineParameters": [{"Name": "n", "Value": "7"}]}, {"PipelineExecutionArn": EXECUTION_ARN})


def test_list_steps_follows_every_page_and_keeps_sagemaker_metadata(client, compiled, tmp_path) -> None:
    pipeline, bundle = compiled
    definition = bundle.definition_bytes.decode()
    backend = _backend(client, tmp_path)
    with Stubber(client) as stub:
        _first_look(stub, definition)
        _poll(stub, "Executing", [[_step("total", "Executing", job="total-1")],
                                  [_step("make", "Succeeded", attempts=2, job="make-2")]])
        _plan_and_parameters(stub, definition)
        steps = backend.list_steps("churn", "abc123def456")
        stub.assert_no_pending_responses()
    by_name = {s["StepName"]: s for s in steps}
    assert [s["StepName"] for s in steps] == ["total", "make"]  # newest first, as SageMaker lists them
    assert by_name["make"]["StepStatus"] == "Succeeded" and by_name["make"]["AttemptCount"] == 2
    assert by_name["make"]["Metadata"]["TrainingJob"]["Arn"].endswith("training-job/make-2")
    assert by_name["total"]["StepStatus"] == "Executing"


def test_run_mirrors_states_until_the_end_with_the_shared_status_mapping(client, compiled, tmp_path) -> None:
    pipeline, bundle = compiled
    definition = bundle.definition_bytes.decode()
    backend = _backend(client, tmp_path)
    seen: list[str] = []
    with Stubber(client) as stub:
        _first_look(stub, definition)
        _poll(stub, "Executing", [[_step("make", "Executing")]])
        _plan_and_parameters(stub, definition)
        _poll(stub, "Executing", [[_step("make", "Executing")]])  # unchanged: not reported again
        _poll(stub, "Executing", [[_step("total", "Starting"), _step("make", "Succeeded")]])
        _poll(stub, "Succeeded", [[_step("total", "Succeeded"), _step("make", "Succeeded")]])
        final = backend.run("churn", "abc123def456",
                            on_change=lambda s: seen.append(",".join(f"{n}={x.status}" for n, x in s.steps.items())))
        stub.assert_no_pending_responses()
    assert seen == ["make=Executing,total=Pending", "make=Succeeded,total=Starting",
                    "make=Succeeded,total=Succeeded"]
    assert final.status == "Succeeded" and final.parameters == {"n": "7"}
    status = execution_status(final, lambda step: backend.result_uri("churn", "abc123def456", step))
    assert [(s["name"], s["phase"]) for s in status["steps"]] == [("make", "Succeeded"), ("total", "Succeeded")]
    assert status["summary"]["steps"] == "2/2"
    assert status["steps"][1]["resultUri"].endswith("/churn/abc123def456/total/results")
    assert backend.pollers.active() == 0


def test_untaken_branch_is_skipped_once_the_execution_succeeded(client, compiled, tmp_path) -> None:
    _, bundle = compiled
    definition = bundle.definition_bytes.decode()
    backend = _backend(client, tmp_path)
    with Stubber(client) as stub:
        _first_look(stub, definition)
        _poll(stub, "Succeeded", [[_step("make", "Succeeded")]])
        _plan_and_parameters(stub, definition)
        state = backend.execution_state("churn", "abc123def456")
    assert state.steps["total"].status == "Skipped" and state.steps["total"].skip_reason


def test_stop_and_retry(client, compiled, tmp_path) -> None:
    _, bundle = compiled
    backend = _backend(client, tmp_path, parallelism=3)
    with Stubber(client) as stub:
        _first_look(stub, bundle.definition_bytes.decode())
        stub.add_response("describe_pipeline_execution", _described_execution("Executing"),
                          {"PipelineExecutionArn": EXECUTION_ARN})
        stub.add_response("stop_pipeline_execution", {"PipelineExecutionArn": EXECUTION_ARN},
                          {"PipelineExecutionArn": EXECUTION_ARN, "ClientRequestToken": ANY})
        backend.stop("churn", "abc123def456")
        stub.add_response("describe_pipeline_execution", _described_execution("Stopped"),
                          {"PipelineExecutionArn": EXECUTION_ARN})
        backend.stop("churn", "abc123def456")  # already over: no second StopPipelineExecution
        stub.add_response("retry_pipeline_execution", {"PipelineExecutionArn": EXECUTION_ARN},
                          {"PipelineExecutionArn": EXECUTION_ARN, "ClientRequestToken": ANY,
                           "ParallelismConfiguration": {"MaxParallelExecutionSteps": 3}})
        backend.retry("churn", "abc123def456")
        stub.assert_no_pending_responses()


@pytest.mark.parametrize(("code", "reason", "kind"), [
    ("AccessDeniedException", "SageMakerAccessDenied", "Infrastructure"),
    ("ValidationException", "SageMakerInvalidDefinition", "User"),
    ("ResourceLimitExceeded", "SageMakerLimitExceeded", "Infrastructure"),
])
def test_create_failures_become_specific_reasons_with_sagemakers_message(client, compiled, tmp_path, code, reason,
                                                                        kind) -> None:
    _, bundle = compiled
    backend = _backend(client, tmp_path)
    message = f"SageMaker says no ({code}) to arn:aws:iam::123456789012:role/r"
    with Stubber(client) as stub:
        stub.add_client_error("describe_pipeline", "ResourceNotFound", "Pipeline churn does not exist")
        stub.add_client_error("create_pipeline", code, message)
        with pytest.raises(BackendError) as caught:
            backend.upsert(bundle, backend.store, role_arn="arn:aws:iam::123456789012:role/r", description=None,
                           tags=None)
    assert (caught.value.reason, caught.value.kind) == (reason, kind)
    assert message in str(caught.value)
    assert SECRET not in str(caught.value) and "AKIAEXAMPLE" not in str(caught.value)


def test_unchanged_definition_sends_no_update_and_a_changed_role_does(client, compiled, tmp_path) -> None:
    _, bundle = compiled
    backend = _backend(client, tmp_path)
    definition = bundle.definition_bytes.decode()
    pretty = json.dumps(json.loads(definition), indent=2)  # SageMaker may give it back reformatted
    with Stubber(client) as stub:
        stub.add_response("describe_pipeline", _described_pipeline(pretty), {"PipelineName": "churn"})
        backend.upsert(bundle, backend.store, role_arn=None, description=None, tags=None)
        stub.add_response("describe_pipeline", _described_pipeline(pretty), {"PipelineName": "churn"})
        stub.add_response("update_pipeline", {"PipelineArn": PIPELINE_ARN},
                          {"PipelineName": "churn", "PipelineDisplayName": "churn", "PipelineDefinition": definition,
                           "RoleArn": "arn:aws:iam::123456789012:role/other"})
        backend.upsert(bundle, backend.store, role_arn="arn:aws:iam::123456789012:role/other", description=None,
                       tags=None)
        stub.assert_no_pending_responses()


def test_throttled_polls_back_off_and_go_on(client, compiled, tmp_path) -> None:
    _, bundle = compiled
    definition = bundle.definition_bytes.decode()
    backend = _backend(client, tmp_path)
    with Stubber(client) as stub:
        _first_look(stub, definition)
        stub.add_client_error("describe_pipeline_execution", "ThrottlingException", "Rate exceeded")
        _poll(stub, "Succeeded", [[_step("total", "Succeeded"), _step("make", "Succeeded")]])
        _plan_and_parameters(stub, definition)
        assert backend.run("churn", "abc123def456").status == "Succeeded"
        stub.assert_no_pending_responses()


def test_threads_following_one_execution_share_one_poller(client, compiled, tmp_path) -> None:
    """Two followers, one sequence of polls: the stubbed answers are consumed once, in order."""
    _, bundle = compiled
    definition = bundle.definition_bytes.decode()
    backend = _backend(client, tmp_path)
    results: list[str] = []
    with Stubber(client) as stub:
        _first_look(stub, definition)
        _poll(stub, "Executing", [[_step("make", "Executing")]])
        _plan_and_parameters(stub, definition)
        for _ in range(5):
            _poll(stub, "Executing", [[_step("make", "Executing")]])
        _poll(stub, "Succeeded", [[_step("total", "Succeeded"), _step("make", "Succeeded")]])
        backend.execution_arn("churn", "abc123def456")  # the DescribePipeline, before threads race for it
        threads = [threading.Thread(target=lambda: results.append(backend.run("churn", "abc123def456").status))
                   for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        stub.assert_no_pending_responses()
    assert results == ["Succeeded", "Succeeded"]


def test_definition_over_the_inline_limit_needs_an_s3_store(client, config_env, write_pipeline, tmp_path) -> None:
    config_env('SchemaVersion: "1.0"\n')
    backend = _backend(client, tmp_path)
    huge = write_pipeline()
    huge.parameters[1].default_value = "x" * (backend.inline_limit() + 1)
    bundle = huge.session.compile(huge, str(tmp_path / "huge"))
    with pytest.raises(ConfigurationError) as caught:
        backend.upsert(bundle, backend.store, role_arn="arn:aws:iam::123456789012:role/r", description=None,
                       tags=None)
    assert caught.value.reason == "DefinitionTooLarge"


def test_definition_over_the_inline_limit_goes_by_s3_location(client, config_env, write_pipeline, tmp_path,
                                                             s3, monkeypatch) -> None:
    config_env('SchemaVersion: "1.0"\n')
    for name, value in s3.env().items():
        if name != "AWS_ENDPOINT_URL_SAGEMAKER":
            monkeypatch.setenv(name, value)
    monkeypatch.setenv("STEPFLOW_S3_ROOT_URI", s3.root_uri)
    store = open_store(s3.root_uri, s3.endpoint_url)
    backend = SageMakerBackend(store, client=client)
    huge = write_pipeline()
    huge.parameters[1].default_value = "x" * (backend.inline_limit() + 1)
    with huge.session.published(huge) as bundle:
        key = f"stepflow/churn/.stepflow/definitions/{bundle.digest.split(':')[1]}.json"
        with Stubber(client) as stub:
            stub.add_client_error("describe_pipeline", "ResourceNotFound", "no such pipeline")
            stub.add_response("create_pipeline", {"PipelineArn": PIPELINE_ARN}, {
                "PipelineName": "churn", "PipelineDisplayName": "churn",
                "RoleArn": "arn:aws:iam::123456789012:role/r", "ClientRequestToken": ANY,
                "PipelineDefinitionS3Location": {"Bucket": s3.bucket, "ObjectKey": key}})
            backend.upsert(bundle, store, role_arn="arn:aws:iam::123456789012:role/r", description=None, tags=None)
            stub.assert_no_pending_responses()
        assert s3.client().get_object(Bucket=s3.bucket, Key=key)["Body"].read() == bundle.definition_bytes


def test_steps_without_a_role_are_refused_before_sagemaker_is_called(client, config_env, write_pipeline, tmp_path,
                                                                    monkeypatch) -> None:
    config_env('SchemaVersion: "1.0"\n')
    monkeypatch.delenv("STEPFLOW_ROLE_ARN")
    pipeline = write_pipeline()
    bundle = pipeline.session.compile(pipeline, str(tmp_path / "bundle"))
    backend = _backend(client, tmp_path)
    with Stubber(client) as stub, pytest.raises(ConfigurationError) as caught:
        backend.upsert(bundle, backend.store, role_arn="arn:aws:iam::123456789012:role/r", description=None,
                       tags=None)
    stub.assert_no_pending_responses()
    assert caught.value.reason == "SageMakerRoleMissing"
    assert "make, total" in str(caught.value) and "STEPFLOW_ROLE_ARN" in str(caught.value)


def test_backoff_grows_while_nothing_changes_and_is_jittered() -> None:
    backoff = Backoff(min=2.0, max=30.0, factor=1.5)
    delays = [2.0]
    for _ in range(10):
        delays.append(backoff.next(delays[-1], changed=False))
    assert delays[:3] == [2.0, 3.0, 4.5] and delays[-1] == 30.0
    assert backoff.next(30.0, changed=True) == 2.0
    samples = {round(Backoff.jittered(10.0), 6) for _ in range(50)}
    assert all(5.0 <= s <= 10.0 for s in samples) and len(samples) > 1


def test_an_unknown_configured_backend_names_where_it_came_from(config_env, monkeypatch) -> None:
    config_env('SchemaVersion: "1.0"\n')
    monkeypatch.setenv("STEPFLOW_BACKEND", "sagemkaer")
    from stepflow.session import Session

    with pytest.raises(ConfigurationError) as caught:
        Session()
    assert "sagemkaer" in str(caught.value) and "env STEPFLOW_BACKEND" in str(caught.value)
    assert caught.value.reason == "UnsupportedBackend"


def test_a_request_botocores_model_refuses_is_never_sent(client, compiled, tmp_path) -> None:
    """Parameter validation is on: a role ARN SageMaker's model refuses fails here, as the user's error."""
    _, bundle = compiled
    backend = _backend(client, tmp_path)
    with Stubber(client) as stub:
        stub.add_client_error("describe_pipeline", "ResourceNotFound", "no such pipeline")
        stub.add_response("create_pipeline", {"PipelineArn": PIPELINE_ARN})  # reached only if validation passed
        with pytest.raises(BackendError) as caught:
            backend.upsert(bundle, backend.store, role_arn="not-an-arn", description=None, tags=None)
        with pytest.raises(AssertionError):
            stub.assert_no_pending_responses()  # CreatePipeline was never sent
    assert (caught.value.reason, caught.value.kind) == ("SageMakerInvalidDefinition", "User")
    assert "RoleArn" in str(caught.value)
