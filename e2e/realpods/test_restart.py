"""The operator's pod deleted in the middle of an execution: a new pod (the Deployment's)
takes the execution over and finishes it, and no step runs twice.

The store is S3 (versitygw on the bridge gateway, where pods reach the host), not the pod's
emptyDir, so the execution's state outlives the pod. Steps run as Jobs (backend
kubernetes), so the step that was running goes on while no operator runs; the new pod
adopts its Job. Steps mark each run with an object in the bucket, and the middle step waits
for a ``go`` object that the test writes only once the new pod has resumed the execution.
"""

from __future__ import annotations

import secrets
from pathlib import Path

from e2e.cluster import Cluster, wait_for
from e2e.realpods.release import install_release, uninstall_release
from e2e.test_kind_gitops import executions_of, pipeline_manifest

SLOW_MIDDLE = '''
import time
import uuid

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from stepflow.workflow.function_step import step
from stepflow.workflow.pipeline import Pipeline

S3 = {s3!r}


def _client():
    return boto3.client("s3", endpoint_url=S3["endpoint_url"], aws_access_key_id=S3["access_key"],
                        aws_secret_access_key=S3["secret_key"], region_name=S3["region"],
                        config=Config(s3={{"addressing_style": "path"}}))


def _mark(name):
    _client().put_object(Bucket=S3["bucket"], Key=f"marks/{{name}}/" + uuid.uuid4().hex, Body=b"ran")


@step(name="first")
def first() -> int:
    _mark("first")
    return 1


@step(name="slow")
def slow(x: int) -> int:
    _mark("slow")
    client, deadline = _client(), time.monotonic() + 300
    while True:
        try:
            client.head_object(Bucket=S3["bucket"], Key="marks/go")
            return x + 1
        except ClientError:
            if time.monotonic() > deadline:
                raise TimeoutError("nobody wrote marks/go")
            time.sleep(0.1)


@step(name="last")
def last(x: int) -> int:
    _mark("last")
    return x * 10


pipeline = Pipeline(name="{name}", steps=[last(slow(first()))])
'''


def _step_phase(cluster: Cluster, namespace: str, execution: str, step: str) -> str | None:
    found = cluster.get(namespace, "pipelineexecution", execution)
    steps = (found.get("status") or {}).get("steps") or []
    return next((s.get("phase") for s in steps if s["name"] == step), None)


def _operator_pods(cluster: Cluster, release) -> list[dict]:
    return cluster.get(release.namespace, "pods", selector=f"app.kubernetes.io/instance={release.name}")["items"]


def test_operator_pod_deleted_mid_execution_is_finished_by_the_next_pod(cluster: Cluster, image, runner, pod_s3,
                                                                        repo, tmp_path: Path):
    namespace = f"restart-{secrets.token_hex(3)}"
    cluster.kubectl("create", "namespace", namespace)
    bucket = pod_s3.new_bucket("restart")
    release = install_release(cluster, image, namespace, store=f"s3://{bucket.bucket}/stepflow", runner=runner,
                              s3={"endpoint_url": pod_s3.endpoint_url, "access_key": pod_s3.access_key,
                                  "secret_key": pod_s3.secret_key, "region": pod_s3.region})
    try:
        name = f"restart-{secrets.token_hex(2)}"
        flow = repo("restart")
        s3 = {"endpoint_url": pod_s3.endpoint_url, "access_key": pod_s3.access_key,
              "secret_key": pod_s3.secret_key, "region": pod_s3.region, "bucket": bucket.bucket}
        flow.commit({"pipelines/flow.py": SLOW_MIDDLE.format(s3=s3, name=name)}, "slow")
        cluster.apply(namespace, pipeline_manifest(name, flow.url))
        execution = wait_for(lambda: executions_of(cluster, namespace, name), 300,
                             "the first execution")[0]["metadata"]["name"]
        wait_for(lambda: _step_phase(cluster, namespace, execution, "slow") == "Executing", 300,
                 "step slow running")

        (old,) = _operator_pods(cluster, release)
        cluster.kubectl("-n", release.namespace, "delete", "pod", old["metadata"]["name"], "--wait=true",
                        timeout=120)
        new = wait_for(lambda: [p for p in _operator_pods(cluster, release)
                                if p["metadata"]["uid"] != old["metadata"]["uid"]
                                and (p.get("status") or {}).get("phase") == "Running"], 180,
                       "the Deployment's next operator pod")[0]
        wait_for(lambda: f"resuming execution {execution}" in release.logs(400), 180,
                 f"pod {new['metadata']['name']} resuming the execution")
        bucket.client().put_object(Bucket=bucket.bucket, Key="marks/go", Body=b"")

        def ended() -> dict | None:
            found = cluster.get(namespace, "pipelineexecution", execution)
            return found if (found.get("status") or {}).get("phase") in ("Succeeded", "Failed", "Stopped") else None

        done = wait_for(ended, 300, f"PipelineExecution {execution} to end")
        steps = [(s["name"], s["phase"], s["attempts"]) for s in done["status"]["steps"]]
        runs = {}
        for step in ("first", "slow", "last"):
            listed = bucket.client().list_objects_v2(Bucket=bucket.bucket, Prefix=f"marks/{step}/")
            runs[step] = len(listed.get("Contents", []))
        assert done["status"]["phase"] == "Succeeded", done["status"]
        assert steps == [("first", "Succeeded", 1), ("slow", "Succeeded", 1), ("last", "Succeeded", 1)]
        # What the old pod had finished is not run again, what was running ran on (its Job
        # was adopted), and what follows runs once: one Job per step.
        assert runs == {"first": 1, "slow": 1, "last": 1}, runs
        jobs = cluster.get(namespace, "jobs", selector=f"stepflow.dev/execution={execution}")["items"]
        assert sorted(j["metadata"]["labels"]["stepflow.dev/step"] for j in jobs) == ["first", "last", "slow"]
    finally:
        uninstall_release(cluster, release)
        cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)
