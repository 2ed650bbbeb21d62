"""Backend kubernetes on real pods, through the operator installed by the chart: every step
attempt is a Job in the Pipeline's namespace, in the runner image, sized by the instance
table, owned by its PipelineExecution.

One release serves the module (an operator start costs about a minute here): S3 on the
bridge gateway, the step Secrets in the watched namespace, the tests' instance table
(``release.TEST_INSTANCE_TYPES``) and a short ``unschedulableTimeout`` so that an
impossible request fails within the test's time.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import pytest

from e2e.cluster import Cluster, wait_for
from e2e.realpods.release import LocalRelease, install_release, uninstall_release
from e2e.test_kind_gitops import executions_of, pipeline_manifest
from stepflow import layout

TERMINAL = ("Succeeded", "Failed", "Stopped")


@pytest.fixture(scope="module")
def jobs_release(cluster: Cluster, image: str, runner: str, pod_s3) -> Iterator[tuple[LocalRelease, str, Any]]:
    namespace = f"jobs-{secrets.token_hex(3)}"
    cluster.kubectl("create", "namespace", namespace)
    bucket = pod_s3.new_bucket("jobs")
    release = install_release(cluster, image, namespace, store=f"s3://{bucket.bucket}/stepflow", runner=runner,
                              s3={"endpoint_url": pod_s3.endpoint_url, "access_key": pod_s3.access_key,
                                  "secret_key": pod_s3.secret_key, "region": pod_s3.region},
                              steps={"unschedulableTimeout": "10s", "imagePullTimeout": "20s"})
    try:
        yield release, namespace, bucket
    finally:
        uninstall_release(cluster, release)
        cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def _run(cluster: Cluster, repo, namespace: str, name: str, files: dict[str, str],
         module: str = "pipelines/flow.py", timeout: float = 420) -> dict:
    """Push ``files``, apply the Pipeline, wait for its first execution to end; the execution."""
    flow = repo(name)
    flow.commit(files, name)
    manifest = pipeline_manifest(name, flow.url)
    manifest["spec"]["module"] = module
    cluster.apply(namespace, manifest)
    execution = wait_for(lambda: executions_of(cluster, namespace, name), 300,
                         f"the first execution of {name}")[0]["metadata"]["name"]

    def ended() -> dict | None:
        found = cluster.get(namespace, "pipelineexecution", execution)
        return found if (found.get("status") or {}).get("phase") in TERMINAL else None

    return wait_for(ended, timeout, f"PipelineExecution {execution} to end", interval=1)


def _jobs(cluster: Cluster, namespace: str, execution: str) -> list[dict]:
    return cluster.get(namespace, "jobs", selector=f"stepflow.dev/execution={execution}")["items"]


def _log(bucket, namespace: str, pipeline: str, execution: str, step: str, attempt: int = 1) -> str:
    """A step attempt's log in the store of the Pipeline resource ``namespace/pipeline`` (the
    operator keeps each resource's store under ``<root>/<namespace>/<name>``)."""
    key = (f"stepflow/{layout.resource_prefix(namespace, pipeline)}/"
           f"{layout.in_pipeline(pipeline, layout.attempt_log_key(execution, step, attempt))}")
    return bucket.client().get_object(Bucket=bucket.bucket, Key=key)["Body"].read().decode()


def test_the_churn_example_runs_one_job_per_step(cluster: Cluster, jobs_release, repo):
    from e2e.realpods.demo import example_files

    release, namespace, bucket = jobs_release
    done = _run(cluster, repo, namespace, "churn", example_files(), module="pipelines/churn.py")
    status = done["status"]
    assert status["phase"] == "Succeeded", status
    execution = done["metadata"]["name"]
    ran = [s["name"] for s in status["steps"] if s["phase"] == "Succeeded" and s.get("attempts")]
    jobs = _jobs(cluster, namespace, execution)
    # One Job per step attempt, named and labelled after it, owned by the PipelineExecution.
    assert sorted(j["metadata"]["labels"]["stepflow.dev/step"] for j in jobs) == sorted(ran)
    for job in jobs:
        labels = job["metadata"]["labels"]
        assert labels["stepflow.dev/pipeline"] == "churn" and labels["stepflow.dev/attempt"] == "1"
        assert job["metadata"]["name"] == f"{execution}-{labels['stepflow.dev/step']}-1"
        (owner,) = job["metadata"]["ownerReferences"]
        assert (owner["kind"], owner["name"], owner["uid"]) == ("PipelineExecution", execution,
                                                                 done["metadata"]["uid"])
        assert job["spec"]["ttlSecondsAfterFinished"] > 0

    def all_complete() -> bool:
        return all({c["type"] for c in (j.get("status") or {}).get("conditions") or () if c["status"] == "True"}
                   >= {"Complete"} for j in _jobs(cluster, namespace, execution))

    # The orchestrator moves on at the attempt record; the Job controller marks it Complete after.
    wait_for(all_complete, 60, "every Job Complete")
    # The pods' output is in the store, where `stepflow logs` reads it once the pod is gone.
    assert "stepflow: step preprocess attempt 1 succeeded" in _log(bucket, namespace, "churn", execution, "preprocess")


FAILURES = '''
import time

from stepflow.workflow.function_step import step
from stepflow.workflow.pipeline import Pipeline


@step(name="no-image", image_uri="stepflow.test/does-not-exist:0.0.0-missing")
def no_image() -> int:
    return 1


@step(name="hog", instance_type="ml.test.small-memory")
def hog() -> int:
    blocks = []
    while True:
        blocks.append(bytearray(16 * 1024 * 1024))  # touched by bytearray's zeroing


@step(name="overtime", max_runtime_in_seconds=20)
def overtime() -> int:
    time.sleep(600)
    return 1


@step(name="too-big", instance_type="ml.test.too-big")
def too_big() -> int:
    return 1


pipeline = Pipeline(name="{name}", steps=[no_image(), hog(), overtime(), too_big()])
'''


def test_each_failure_has_its_reason(cluster: Cluster, jobs_release, repo):
    release, namespace, bucket = jobs_release
    name = f"fails-{secrets.token_hex(2)}"
    done = _run(cluster, repo, namespace, name, {"pipelines/flow.py": FAILURES.replace("{name}", name)})
    status = done["status"]
    assert status["phase"] == "Failed", status
    reasons = {s["name"]: s.get("failureReason") or "" for s in status["steps"]}
    assert reasons["no-image"].startswith("ImagePullFailed: image 'stepflow.test/does-not-exist:0.0.0-missing'"), \
        reasons
    assert reasons["hog"].startswith("OutOfMemory: ") and "160Mi" in reasons["hog"], reasons
    assert reasons["overtime"].startswith("MaxRuntimeExceeded: ") and "(20 s)" in reasons["overtime"], reasons
    assert reasons["too-big"].startswith("Unschedulable: ") and "Insufficient cpu" in reasons["too-big"], reasons
    # The stuck pods' Jobs were deleted by the orchestrator, not left pending.
    execution = done["metadata"]["name"]
    wait_for(lambda: not {j["metadata"]["labels"]["stepflow.dev/step"] for j in _jobs(cluster, namespace, execution)}
             & {"no-image", "too-big"}, 60, "the stuck Jobs deleted")


SLEEPER = '''
from stepflow.workflow.function_step import step
from stepflow.workflow.pipeline import Pipeline


@step(name="sleeper")
def sleeper() -> int:
    import time

    print("sleeping", flush=True)
    time.sleep(600)
    return 1


pipeline = Pipeline(name="{name}", steps=[sleeper()])
'''


def test_stopping_an_execution_deletes_its_running_job(cluster: Cluster, jobs_release, repo):
    release, namespace, bucket = jobs_release
    name = f"stop-{secrets.token_hex(2)}"
    flow = repo(name)
    flow.commit({"pipelines/flow.py": SLEEPER.replace("{name}", name)}, name)
    cluster.apply(namespace, pipeline_manifest(name, flow.url))
    execution = wait_for(lambda: executions_of(cluster, namespace, name), 300, "the execution")[0]["metadata"]["name"]

    def pod_running() -> bool:
        pods = cluster.get(namespace, "pods", selector=f"stepflow.dev/execution={execution}")["items"]
        return any((p.get("status") or {}).get("phase") == "Running" for p in pods)

    wait_for(pod_running, 180, "the sleeper's pod running")
    # What `stepflow stop` writes: the orchestrator in the operator acts on it.
    key = (f"stepflow/{layout.resource_prefix(namespace, name)}/"
           f"{layout.in_pipeline(name, layout.stop_request_key(execution))}")
    bucket.client().put_object(Bucket=bucket.bucket, Key=key, Body=b"{}")
    wait_for(lambda: (cluster.get(namespace, "pipelineexecution", execution).get("status") or {})
             .get("phase") == "Stopped", 120, f"{execution} Stopped")
    # The PipelineExecution is still there (no garbage collection involved): the stop deleted the Job.
    wait_for(lambda: not _jobs(cluster, namespace, execution)
             and not cluster.get(namespace, "pods", selector=f"stepflow.dev/execution={execution}")["items"],
             120, "the sleeper's Job and pod deleted")


ISOLATION = '''
import json
import os

from stepflow.workflow.function_step import step
from stepflow.workflow.pipeline import Pipeline


@step(name="probe")
def probe() -> int:
    token = "/var/run/secrets/kubernetes.io/serviceaccount/token"
    found = {"token_mounted": os.path.exists(token), "uid": os.getuid(),
             "integrity_key_in_env": "STEPFLOW_INTEGRITY_KEY" in os.environ}
    print("ISOLATION " + json.dumps(found), flush=True)
    return 1


pipeline = Pipeline(name="{name}", steps=[probe()])
'''


def test_a_step_pod_has_no_api_token_and_no_key_in_its_environment(cluster: Cluster, jobs_release, repo):
    import json

    release, namespace, bucket = jobs_release
    name = f"iso-{secrets.token_hex(2)}"
    done = _run(cluster, repo, namespace, name, {"pipelines/flow.py": ISOLATION.replace("{name}", name)})
    assert done["status"]["phase"] == "Succeeded", done["status"]
    line = next(l for l in _log(bucket, namespace, name, done["metadata"]["name"], "probe").splitlines()
                if l.startswith("ISOLATION "))
    found = json.loads(line.removeprefix("ISOLATION "))
    assert found == {"token_mounted": False, "uid": 65534, "integrity_key_in_env": False}
    # Not the operator's service account: the namespace's default one, whose token is not mounted.
    (job,) = _jobs(cluster, namespace, done["metadata"]["name"])
    pod = job["spec"]["template"]["spec"]
    assert pod.get("serviceAccountName") in (None, "default") and pod["automountServiceAccountToken"] is False


MIXED = '''
from stepflow.workflow.condition_step import ConditionStep
from stepflow.workflow.conditions import ConditionEquals
from stepflow.workflow.fail_step import FailStep
from stepflow.workflow.function_step import step
from stepflow.workflow.pipeline import Pipeline
from stepflow.workflow.processing import ProcessingInput, ProcessingOutput, ScriptProcessor
from stepflow.workflow.steps import ProcessingStep

processor = ScriptProcessor(image_uri="{runner}", command=["python3"], role="arn:aws:iam::1:role/R",
                            instance_type="ml.m5.large", instance_count=1)
prep = ProcessingStep(name="prep", step_args=processor.run(
    inputs=[ProcessingInput(source="{raw}", destination="/opt/ml/processing/input/raw")],
    outputs=[ProcessingOutput(output_name="train", source="/opt/ml/processing/train")], code="prep.py"))


@step(name="count")
def count(uri: str, job: str) -> int:
    from stepflow.storage import open_store

    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    rows = int(open_store("s3://" + bucket).get_bytes(prefix + "/rows.txt").decode())
    print("ROWS", rows, "FROM", uri, "AFTER JOB", job, flush=True)
    return rows


train_uri = prep.properties.ProcessingOutputConfig.Outputs["train"].S3Output.S3Uri
completed = ConditionStep(name="completed",
                          conditions=[ConditionEquals(left=prep.properties.ProcessingJobStatus, right="Completed")],
                          if_steps=[count(train_uri, prep.properties.ProcessingJobName)],
                          else_steps=[FailStep(name="not-completed", error_message="prep did not complete")])
pipeline = Pipeline(name="{name}", steps=[completed])
'''

PREP = '''
import pathlib

rows = pathlib.Path("/opt/ml/processing/input/raw/data.csv").read_text().splitlines()
out = pathlib.Path("/opt/ml/processing/train")
out.mkdir(parents=True, exist_ok=True)
(out / "rows.txt").write_text(str(len(rows)))
print("prepared", len(rows), "rows")
'''


def test_a_processing_step_feeds_a_step_function(cluster: Cluster, jobs_release, repo, runner):
    """The seed's mixed example, on the runner image: inputs downloaded before the processing
    container starts, its output uploaded after it exits, read by the @step downstream; a
    condition on the processing job's status chooses the branch, and the @step receives the
    job's name (its Job's), as on SageMaker."""
    release, namespace, bucket = jobs_release
    name = f"mixed-{secrets.token_hex(2)}"
    bucket.client().put_object(Bucket=bucket.bucket, Key=f"raw-{name}/data.csv", Body=b"a,1\nb,2\nc,3\n")
    flow = MIXED.replace("{runner}", runner).replace("{raw}", f"s3://{bucket.bucket}/raw-{name}").replace(
        "{name}", name)
    done = _run(cluster, repo, namespace, name, {"pipelines/flow.py": flow, "prep.py": PREP})
    assert done["status"]["phase"] == "Succeeded", done["status"]
    execution = done["metadata"]["name"]
    jobs = {j["metadata"]["labels"]["stepflow.dev/step"]: j["metadata"]["name"]
            for j in _jobs(cluster, namespace, execution)}
    assert sorted(jobs) == ["count", "prep"]
    phases = {s["name"]: s["phase"] for s in done["status"]["steps"]}
    assert (phases["completed"], phases["not-completed"]) == ("Succeeded", "Skipped")
    expected = f"s3://{bucket.bucket}/stepflow/{namespace}/{name}/{name}/{execution}/prep/output/train"
    log = _log(bucket, namespace, name, execution, "count")
    assert f"ROWS 3 FROM {expected} AFTER JOB {jobs['prep']}" in log
