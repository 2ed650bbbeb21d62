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
         module: str = "pipelines/flow.py", timeout: float = 420, kubernetes: dict | None = None) -> dict:
    """Push ``files``, apply the Pipeline (with ``spec.kubernetes``), wait for its first
    execution to end; the execution."""
    flow = repo(name)
    flow.commit(files, name)
    manifest = pipeline_manifest(name, flow.url)
    manifest["spec"]["module"] = module
    if kubernetes:
        manifest["spec"]["kubernetes"] = kubernetes
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

from stepflow.workflow.function_step import step
from stepflow.workflow.pipeline import Pipeline


@step(name="probe")
def probe() -> dict:
    """Everywhere the step's code could find the integrity key; 64-hex tokens only as digests."""
    import hashlib
    import os
    import re

    tokens, looked = set(), []

    def look(where, data):
        looked.append(where)
        tokens.update(hashlib.sha256(t).hexdigest() for t in re.findall(rb"[0-9a-f]{64}", data))

    def read(path):
        try:
            with open(path, "rb") as f:
                return f.read()
        except OSError:
            return None

    etc = []
    for folder, _, files in os.walk("/etc/stepflow"):
        for name in files:
            etc.append(os.path.join(folder, name))
            data = read(os.path.join(folder, name))
            if data is not None:
                look(etc[-1], data)
    processes, roots = {}, []
    for pid in (p for p in os.listdir("/proc") if p.isdigit()):
        processes[pid] = (read(f"/proc/{pid}/cmdline") or b"").replace(b"\\0", b" ").decode(errors="replace")
        environ = read(f"/proc/{pid}/environ")
        if environ is not None:
            look(f"/proc/{pid}/environ", environ)
        for root, _, files in os.walk(f"/proc/{pid}/root/etc/stepflow"):
            roots += [os.path.join(root, name) for name in files]
        key = read(f"/proc/{pid}/root/etc/stepflow/integrity/key")
        if key is not None:
            look(f"/proc/{pid}/root/etc/stepflow/integrity/key", key)
    look("os.environ", "\\n".join(f"{k}={v}" for k, v in os.environ.items()).encode())
    token = "/var/run/secrets/kubernetes.io/serviceaccount/token"
    found = {"key_file": os.path.exists("/etc/stepflow/integrity/key"), "etc_stepflow": etc, "proc_roots": roots,
             # AWS_DEFAULT_REGION is declared (the step's Environment): not a credential.
             "variables": sorted(k for k in os.environ if "INTEGRITY" in k
                                 or (k.startswith("AWS_") and k != "AWS_DEFAULT_REGION")),
             "token_mounted": os.path.exists(token), "uid": os.getuid(), "processes": processes,
             "looked": looked, "tokens": sorted(tokens)}
    print("ISOLATION " + json.dumps(found), flush=True)
    return found


@step(name="downstream")
def downstream(found: dict) -> int:
    """Reads the probe's result: signed by the pod's collector, verified by this pod's stage."""
    print("DOWNSTREAM " + json.dumps(found), flush=True)
    return len(found["looked"])


pipeline = Pipeline(name="{name}", steps=[downstream(probe())])
'''


def test_a_step_pod_never_reaches_the_integrity_key_and_its_results_stay_signed(cluster: Cluster, jobs_release,
                                                                                  repo):
    import base64
    import hashlib
    import json

    release, namespace, bucket = jobs_release
    name = f"iso-{secrets.token_hex(2)}"
    done = _run(cluster, repo, namespace, name, {"pipelines/flow.py": ISOLATION.replace("{name}", name)})
    assert done["status"]["phase"] == "Succeeded", done["status"]
    execution = done["metadata"]["name"]
    line = next(l for l in _log(bucket, namespace, name, execution, "probe").splitlines()
                if l.startswith("ISOLATION "))
    found = json.loads(line.removeprefix("ISOLATION "))
    key = base64.b64decode(cluster.get(namespace, "secret", "stepflow-step-signing")["data"]["key"]).strip()
    # It looked: its own environment and every process it can see (its container's only).
    assert "os.environ" in found["looked"] and any(w.startswith("/proc/") for w in found["looked"]), found
    assert found["processes"] and all("stepflow.runtime.pod collect" not in c and "stage" not in c.split()
                                      for c in found["processes"].values()), found["processes"]
    # And found nothing: no key file, nothing under /etc/stepflow (its own or any process's
    # root), no key or store-credential variable, no key in any environment block, no token.
    assert hashlib.sha256(key).hexdigest() not in found["tokens"]
    assert (found["key_file"], found["etc_stepflow"], found["proc_roots"], found["variables"],
            found["token_mounted"], found["uid"]) == (False, [], [], [], False, 65534), found
    # The downstream step loaded the probe's result: signed with the key, verified with it.
    assert f"DOWNSTREAM {json.dumps(found)}" in _log(bucket, namespace, name, execution, "downstream")
    results = (f"stepflow/{layout.resource_prefix(namespace, name)}/"
               f"{layout.in_pipeline(name, layout.results_prefix(execution, 'probe'))}")
    metadata = json.loads(bucket.client().get_object(Bucket=bucket.bucket, Key=layout.metadata_key(results))["Body"]
                          .read())
    assert "hmac_sha256" in metadata, metadata
    # The pod: the key's volume in the runtime's containers only; the token not mounted.
    job = next(j for j in _jobs(cluster, namespace, execution) if j["metadata"]["labels"]["stepflow.dev/step"]
               == "probe")
    pod = job["spec"]["template"]["spec"]
    assert pod.get("serviceAccountName") in (None, "default") and pod["automountServiceAccountToken"] is False
    keyed = {c["name"] for c in pod["initContainers"] + pod["containers"]
             if any(m["name"] == "integrity-key" for m in c.get("volumeMounts") or ())}
    assert keyed == {"stage", "collect"}
    # `stepflow logs` keeps every container's output: the runtime's and the user's.
    log = _log(bucket, namespace, name, execution, "probe")
    assert all(f"==> {c} <==" in log for c in ("stage", "step", "collect")), log


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


def test_a_processing_step_feeds_a_step_function(cluster: Cluster, jobs_release, repo, runner, pod_s3):
    """The seed's mixed example, on the runner image: inputs downloaded before the processing
    container starts, its output uploaded after it exits, read by the @step downstream; a
    condition on the processing job's status chooses the branch, and the @step receives the
    job's name (its Job's), as on SageMaker. The store's credentials are the runtime's: the
    @step reading S3 itself gets its own through its Pipeline's spec.kubernetes
    (docs/ISOLATION.md)."""
    release, namespace, bucket = jobs_release
    name = f"mixed-{secrets.token_hex(2)}"
    bucket.client().put_object(Bucket=bucket.bucket, Key=f"raw-{name}/data.csv", Body=b"a,1\nb,2\nc,3\n")
    flow = MIXED.replace("{runner}", runner).replace("{raw}", f"s3://{bucket.bucket}/raw-{name}").replace(
        "{name}", name)
    credentials = [{"name": k, "valueFrom": {"secretKeyRef": {"name": "stepflow-step-s3", "key": k}}}
                   for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")]
    own_s3 = {"podTemplate": {"spec": {"containers": [{"name": "step", "env": [
        *credentials, {"name": "STEPFLOW_S3_ENDPOINT_URL", "value": pod_s3.endpoint_url},
        {"name": "AWS_REGION", "value": pod_s3.region}]}]}}}
    done = _run(cluster, repo, namespace, name, {"pipelines/flow.py": flow, "prep.py": PREP}, kubernetes=own_s3)
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
