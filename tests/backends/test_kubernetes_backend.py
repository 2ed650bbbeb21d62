"""The kubernetes backend's orchestrator against a real API server and a real S3 server (the
``kube`` and ``s3`` fixtures). No kubelet runs here, so the test plays the step pods: when an
attempt's Job appears it writes the attempt record the pod would write. What real pods show
is in e2e/realpods/test_kubernetes_backend.py.
"""

from __future__ import annotations

import json
import secrets
import textwrap
import threading
from typing import Any

import pytest
from tests.testenv import wait_for

from stepflow import layout
from stepflow.backends.kubernetes import KubernetesBackend, KubernetesTarget
from stepflow.backends.kubernetes.jobspec import StepPodSettings, job_name
from stepflow.backends.kubernetes.resources import DEFAULT_INSTANCE_TYPES
from stepflow.compiler.loader import load_pipeline
from stepflow.session import Session
from stepflow.storage import ObjectStore, open_store
from stepflow.timefmt import millis

PIPELINE = """
from stepflow.workflow.condition_step import ConditionStep
from stepflow.workflow.conditions import ConditionEquals
from stepflow.workflow.fail_step import FailStep
from stepflow.workflow.function_step import step
from stepflow.workflow.pipeline import Pipeline
from stepflow.workflow.processing import ProcessingInput, ProcessingOutput, ScriptProcessor
from stepflow.workflow.properties import Properties
from stepflow.workflow.step_outputs import get_step
from stepflow.workflow.steps import ProcessingStep

processor = ScriptProcessor(image_uri="stepflow.test/prep:1", command=["python3"], role="arn:aws:iam::1:role/R",
                            instance_type="ml.m5.large", instance_count=1)
prep = ProcessingStep(name="prep", step_args=processor.run(
    outputs=[ProcessingOutput(output_name="train", source="/opt/ml/processing/train")], code="prep.py"))


@step(name="use")
def use(job):
    return job


used = use(prep.properties.ProcessingJobName)
# A processing input read from an upstream job's properties: evaluated when its Job is made.
score = ProcessingStep(name="score", step_args=processor.run(inputs=[ProcessingInput(
    source=Properties(get_step(used)).ModelArtifacts.S3ModelArtifacts, destination="/opt/ml/processing/model")],
    code="prep.py"))
check = ConditionStep(name="check", conditions=[ConditionEquals(left=prep.properties.ProcessingJobStatus,
                                                                right="Completed")],
                      if_steps=[used, score],
                      else_steps=[FailStep(name="stop", error_message="prep did not complete")])
pipeline = Pipeline(name="jobprops", steps=[check])
"""


@pytest.fixture
def namespace(kube) -> str:
    name = f"orch-{secrets.token_hex(3)}"
    kube.kubectl("create", "namespace", name)
    return name


def _job(kube, namespace: str, name: str) -> dict[str, Any] | None:
    found = kube.kubectl("-n", namespace, "get", "job", name, "-o", "json", check=False)
    return json.loads(found.stdout) if found.returncode == 0 else None


def _pod_writes_its_record(store: ObjectStore, execution: str, step: str) -> None:
    """What the step's pod does last (the runtime, or a processing step's uploader)."""
    record = {"attempt": 1, "status": "Succeeded", "exitCode": 0, "failureReason": None, "failureKind": None,
              "startedAt": millis(), "finishedAt": millis()}
    store.put_bytes(layout.attempt_record_key(execution, step, 1), json.dumps(record).encode())


def test_a_condition_reads_a_processing_jobs_status_and_a_step_its_name(kube, s3, namespace, tmp_path,
                                                                      monkeypatch):
    for key, value in s3.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "prep.py").write_text("print('prep')\n")
    (tmp_path / "flow_jobprops.py").write_text(textwrap.dedent(PIPELINE))
    target = KubernetesTarget(namespace, StepPodSettings(runner_image="stepflow.test/runner:1",
                                                         instance_types=DEFAULT_INSTANCE_TYPES))
    backend = KubernetesBackend(open_store(s3.root_uri), target, api=kube.new_api_client(), run_dir=tmp_path / "runs")
    pipeline = load_pipeline(str(tmp_path / "flow_jobprops.py"))
    pipeline._session = Session(s3.root_uri, backend=backend)
    pipeline.upsert()
    execution = backend.create_execution("jobprops").execution_id
    store = backend.pipeline_store("jobprops")
    ended: list[Any] = []
    orchestrator = threading.Thread(target=lambda: ended.append(backend.run("jobprops", execution)), daemon=True)
    orchestrator.start()
    try:
        prep_job = job_name(execution, "prep", 1)
        wait_for(lambda: _job(kube, namespace, prep_job), 60, message=f"the Job {prep_job}")
        _pod_writes_its_record(store, execution, "prep")

        use_job = job_name(execution, "use", 1)
        job = wait_for(lambda: _job(kube, namespace, use_job), 60, message=f"the Job {use_job}")
        # The @step received the processing job's name (the Job's) as its argument.
        (stage,) = job["spec"]["template"]["spec"]["initContainers"]  # it reads the invocation
        args = stage["command"]
        assert args[args.index("Steps.prep.ProcessingJobName") + 1] == prep_job
        _pod_writes_its_record(store, execution, "use")

        score_job = job_name(execution, "score", 1)
        job = wait_for(lambda: _job(kube, namespace, score_job), 60, message=f"the Job {score_job}")
        (download,) = job["spec"]["template"]["spec"]["initContainers"]
        inputs = json.loads(download["command"][-1])["inputs"]
        model = json.loads(store.get_bytes(layout.job_description_key(execution, "use", 1)))["ModelArtifacts"]
        assert [model["S3ModelArtifacts"], "/opt/ml/processing/model"] in inputs  # beside the code's
        assert model["S3ModelArtifacts"] == \
            f"{s3.root_uri}/jobprops/{execution}/use/results/{use_job}/output/model.tar.gz"
        _pod_writes_its_record(store, execution, "score")
        orchestrator.join(60)
    finally:
        if orchestrator.is_alive():
            backend.stop("jobprops", execution)
            orchestrator.join(30)
    state = ended[0]
    assert state.status == "Succeeded", state.failure_reason
    assert state.steps["check"].condition_outcome is True and state.steps["stop"].status == "Skipped"

    described = json.loads(store.get_bytes(layout.job_description_key(execution, "prep", 1)))
    assert described["ProcessingJobName"] == prep_job and described["ProcessingJobStatus"] == "Completed"
    assert described["ProcessingJobArn"] == f"{state.execution_arn.split(':pipeline/')[0]}:processing-job/{prep_job}"
    assert described["AppSpecification"]["ImageUri"] == "stepflow.test/prep:1"
    assert described["ProcessingOutputConfig"]["Outputs"][0]["S3Output"]["S3Uri"] == \
        f"{s3.root_uri}/jobprops/{execution}/prep/output/train"
    training = json.loads(store.get_bytes(layout.job_description_key(execution, "use", 1)))
    assert (training["TrainingJobName"], training["TrainingJobStatus"]) == (use_job, "Completed")
