"""The operator with ``spec.backend: sagemaker``: a real operator process, API server, S3 and
git servers, and moto's SageMaker behind a front that answers what moto lacks
(ListPipelineExecutionSteps), validated against botocore's model.

Push to git → the pipeline exists in SageMaker with our definition, an execution is started
with the trigger's parameters, and the steps SageMaker lists show on the PipelineExecution
and on ``kubectl get pipelines``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from tests.operator.world import pipeline_manifest

ROLE = "arn:aws:iam::123456789012:role/stepflow-pipelines"

MODULE = '''
from stepflow.workflow.function_step import step
from stepflow.workflow.parameters import ParameterInteger
from stepflow.workflow.pipeline import Pipeline

n = ParameterInteger(name="n", default_value=5)


@step(name="make", role="arn:aws:iam::123456789012:role/stepflow-jobs")
def make(n: int) -> list:
    return list(range(n))


@step(name="total", role="arn:aws:iam::123456789012:role/stepflow-jobs")
def total(values: list) -> int:
    return sum(values)


pipeline = Pipeline(name="churn", parameters=[n], steps=[total(make(n))])
'''


def _steps(arn_prefix: str) -> list[dict]:
    t0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    return [
        {"StepName": "total", "StepStatus": "Succeeded", "AttemptCount": 1, "StartTime": t0 + timedelta(minutes=3),
         "EndTime": t0 + timedelta(minutes=5),
         "Metadata": {"TrainingJob": {"Arn": f"{arn_prefix}:training-job/pipelines-total-1"}}},
        {"StepName": "make", "StepStatus": "Succeeded", "AttemptCount": 2, "StartTime": t0,
         "EndTime": t0 + timedelta(minutes=3),
         "Metadata": {"TrainingJob": {"Arn": f"{arn_prefix}:training-job/pipelines-make-2"}}},
    ]


def test_push_upserts_starts_and_mirrors_sagemaker(world, git_remote, sagemaker_front, moto):  # noqa: F811
    sagemaker_front.answer("ListPipelineExecutionSteps",
                           {"PipelineExecutionSteps": _steps(f"arn:aws:sagemaker:{moto.region}:{moto.account}")})
    commit = git_remote.commit({"pipelines/flow.py": MODULE}, "v1")
    world.apply(pipeline_manifest("churn-gitops", git_remote.url, backend="sagemaker",
                                  sagemaker={"roleArn": ROLE}, trigger={"parameters": {"n": 7}}))
    world.operator(AWS_ENDPOINT_URL_SAGEMAKER=sagemaker_front.endpoint_url)

    pipeline = world.wait_ready("churn-gitops", summary__revision=commit[:7], timeout=120)
    sm = moto.client()
    described = sm.describe_pipeline(PipelineName="churn")
    assert described["RoleArn"] == ROLE
    uri = pipeline["status"]["definition"]["uri"]
    bucket, _, key = uri[len("s3://"):].partition("/")
    published = world.s3.client().get_object(Bucket=bucket, Key=key)["Body"].read()
    assert json.loads(described["PipelineDefinition"]) == json.loads(published)

    executions = world.wait(lambda: world.items("pipelineexecutions"), 60, "a PipelineExecution")
    run = world.wait_execution(executions[0]["metadata"]["name"], timeout=60)
    status = run["status"]
    [summary] = sm.list_pipeline_executions(PipelineName="churn")["PipelineExecutionSummaries"]
    arn = summary["PipelineExecutionArn"]
    assert status["executionArn"] == arn
    given = sm.list_pipeline_parameters_for_execution(PipelineExecutionArn=arn)["PipelineParameters"]
    assert given == [{"Name": "n", "Value": "7"}]
    assert status["parameters"] == {"n": 7}
    assert [(s["name"], s["phase"], s["attempts"]) for s in status["steps"]] == \
        [("make", "Succeeded", 2), ("total", "Succeeded", 1)]
    assert status["steps"][1]["resultUri"] == \
        f"{world.s3.root_uri}/{world.namespace}/churn-gitops/churn/{arn.rsplit('/', 1)[-1]}/total/results"
    asked = [params["PipelineExecutionArn"] for op, params in sagemaker_front.requests
             if op == "ListPipelineExecutionSteps"]
    assert asked and set(asked) == {arn}

    mirrored = world.wait(lambda: (s := world.get("pipeline", "churn-gitops")["status"]).get("summary", {})
                          .get("steps") == "2/2" and s, 30, "the Pipeline's step summary")
    assert mirrored["lastExecution"]["phase"] == "Succeeded"
    table = world.kubectl("get", "pipelines").stdout.splitlines()
    assert "2/2" in table[1] and "Succeeded" in table[1], table

    # Credentials never reach status, events or the operator's log.
    everything = json.dumps(world.items("pipelines")) + json.dumps(world.items("pipelineexecutions")) \
        + json.dumps(world.events()) + world.log_text()
    assert world.s3.secret_key not in everything


def test_sagemaker_refusal_is_a_reason_on_the_pipeline(world, git_remote, moto):  # noqa: F811
    """No role anywhere: SageMakerRoleMissing on Ready, with every way to fix it."""
    git_remote.commit({"pipelines/flow.py": MODULE}, "v1")
    world.apply(pipeline_manifest("no-role", git_remote.url, backend="sagemaker"))
    world.operator(AWS_ENDPOINT_URL_SAGEMAKER=moto.endpoint_url)
    pipeline = world.wait_ready("no-role", "False", timeout=120)
    ready = next(c for c in pipeline["status"]["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "SageMakerRoleMissing", ready
    assert "spec.sagemaker.roleArn" in ready["message"]
    assert any(e["reason"] == "SageMakerRoleMissing" for e in world.events("no-role"))


def test_a_restarted_operator_follows_the_execution_it_started(world, git_remote, sagemaker_front, moto):  # noqa: F811
    """Kill the operator mid-execution: the next one finds SageMaker's ARN (store record,
    ``status.executionArn``) and follows it; SageMaker never gets a second start."""
    phase = {"execution": "Executing", "total": "Executing"}
    region, account = moto.region, moto.account

    def describe(params: dict) -> dict:
        arn = params["PipelineExecutionArn"]
        return {"PipelineArn": arn.split("/execution/")[0], "PipelineExecutionArn": arn,
                "PipelineExecutionStatus": phase["execution"], "CreationTime": datetime(2026, 11, 30, tzinfo=UTC),
                "LastModifiedTime": datetime(2026, 11, 30, 0, 9, tzinfo=UTC)}

    def steps(_params: dict) -> dict:
        listed = _steps(f"arn:aws:sagemaker:{region}:{account}")
        listed[0]["StepStatus"] = phase["total"]
        if phase["total"] != "Succeeded":
            listed[0].pop("EndTime")
        return {"PipelineExecutionSteps": listed}

    sagemaker_front.answer("DescribePipelineExecution", describe)
    sagemaker_front.answer("ListPipelineExecutionSteps", steps)
    git_remote.commit({"pipelines/flow.py": MODULE}, "v1")
    world.apply(pipeline_manifest("churn-resume", git_remote.url, backend="sagemaker", sagemaker={"roleArn": ROLE}))
    first = world.operator(AWS_ENDPOINT_URL_SAGEMAKER=sagemaker_front.endpoint_url)
    executions = world.wait(lambda: world.items("pipelineexecutions"), 120, "a PipelineExecution")
    name = executions[0]["metadata"]["name"]
    running = world.wait(lambda: [s for e in world.items("pipelineexecutions")
                                  if (s := e.get("status") or {}).get("steps")
                                  and s["steps"][1]["phase"] == "Executing"], 60, "total Executing")[0]
    first.kill()

    phase.update(execution="Succeeded", total="Succeeded")
    world.operator(AWS_ENDPOINT_URL_SAGEMAKER=sagemaker_front.endpoint_url)
    done = world.wait_execution(name, timeout=60)
    assert done["status"]["executionArn"] == running["executionArn"]
    assert [s["phase"] for s in done["status"]["steps"]] == ["Succeeded", "Succeeded"]
    summaries = moto.client().list_pipeline_executions(PipelineName="churn")["PipelineExecutionSummaries"]
    assert [s["PipelineExecutionArn"] for s in summaries] == [running["executionArn"]]
