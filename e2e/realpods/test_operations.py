"""Operating the chart's operator on real pods: a signed push webhook makes a Pipeline Ready at
once, /metrics moves as Pipelines reconcile and run, and with two replicas the standby takes
over an execution from a killed leader (docs/OPERATIONS.md reports the figures).

The operator's ports are reached through ``kubectl port-forward`` (operations.py): the
receiver through its Service (which only the active replica backs), the metrics likewise.
"""

from __future__ import annotations

import secrets
import time
from datetime import datetime
from pathlib import Path

from tests.operator.world import conditions, value
from tests.testenv.samples import TWO_STEPS

from e2e.cluster import Cluster, Release, wait_for
from e2e.realpods.operations import (
    RECONCILE_ANNOTATION,
    STAGES,
    Webhook,
    delete_stepflow_objects,
    github_push,
    leader_pod,
    lease,
    operator_pods,
    post,
    ready_on,
    stage_seconds,
)
from e2e.realpods.release import install_release, uninstall_release
from e2e.test_kind_gitops import executions_of, pipeline_manifest, ready, wait_ended, wait_status

HOUR = "1h"  # the Pipelines' poll interval: only the webhook can explain a Ready within the test


def _manifest(name: str, url: str, interval: str, on_change: bool = True) -> dict:
    manifest = pipeline_manifest(name, url)
    manifest["spec"]["source"]["interval"] = interval
    manifest["spec"]["trigger"] = {"onChange": on_change}
    return manifest


def test_a_signed_push_makes_the_pipeline_ready_at_once_and_a_forged_one_changes_nothing(
        cluster: Cluster, operator: Release, namespace: str, repo):
    name = f"hook-{secrets.token_hex(2)}"
    hook = Webhook(cluster, operator, namespace, token=secrets.token_urlsafe(24)).setup()
    try:
        flow = repo("hook")
        first = flow.commit({"pipelines/flow.py": TWO_STEPS.format(factor=1, name=name)}, "v1")
        cluster.apply(namespace, _manifest(name, flow.url, HOUR, on_change=False))
        wait_status(cluster, namespace, name, f"Ready on {first[:7]}", lambda p: ready_on(p, first[:7]), 300)

        second = flow.commit({"pipelines/flow.py": TWO_STEPS.format(factor=2, name=name)}, "v2")
        # A forged push: refused, counted, and no reconcile asked (the receiver annotates the
        # Pipelines before it answers, so the answer is the moment to look).
        body, headers = github_push("not-the-token", flow.url, second)
        assert post(hook.url, body, headers) == 403
        after_forged = cluster.get(namespace, "pipeline", name)
        assert RECONCILE_ANNOTATION not in (after_forged["metadata"].get("annotations") or {})
        assert after_forged["status"]["summary"]["revision"] == first[:7]
        label = f"{namespace}/github"
        wait_for(lambda: value(hook.scrape(), "stepflow_webhook_requests_total", receiver=label,
                               result="bad_signature") == 1, 30, "the forged push counted as bad_signature")

        before = hook.scrape()
        body, headers = github_push(hook.token, flow.url, second)
        began = time.monotonic()
        assert post(hook.url, body, headers) == 202
        pipeline = wait_status(cluster, namespace, name, f"Ready on {second[:7]} through the webhook",
                               lambda p: ready_on(p, second[:7]), 120)
        elapsed = time.monotonic() - began
        assert RECONCILE_ANNOTATION in pipeline["metadata"]["annotations"]
        spent = wait_for(lambda: (lambda s: s if s["reconcile"] > 0 else None)(stage_seconds(before, hook.scrape())),
                         30, "the reconcile's stages counted")
        stages = ", ".join(f"{stage} {spent[stage]:.2f}s" for stage in STAGES)
        print(f"FIGURE cluster webhook push -> Ready on the new revision: {elapsed:.2f}s "
              f"(kubectl-polled; reconcile {spent['reconcile']:.2f}s: {stages})")
        assert value(hook.scrape(), "stepflow_webhook_requests_total", receiver=label, result="accepted") == 1
    finally:
        hook.close()
        delete_stepflow_objects(cluster, namespace, "receiver/github", f"pipeline/{name}")


SLEEPY = '''
import time

from stepflow.workflow.function_step import step
from stepflow.workflow.pipeline import Pipeline


@step(name="make")
def make() -> int:
    time.sleep({seconds})
    return 1


@step(name="total")
def total(x: int) -> int:
    time.sleep({seconds})
    return x + 1


pipeline = Pipeline(name="{name}", steps=[total(make())])
'''


def test_metrics_move_as_a_pipeline_reconciles_and_runs(cluster: Cluster, operator: Release, namespace: str, repo):
    name = f"metrics-{secrets.token_hex(2)}"
    hook = Webhook(cluster, operator, namespace, token=secrets.token_urlsafe(24)).setup("metrics")
    try:
        before = hook.scrape()
        flow = repo("metrics")
        flow.commit({"pipelines/flow.py": SLEEPY.format(seconds=3, name=name)}, "v1")
        cluster.apply(namespace, _manifest(name, flow.url, "2s"))
        pipeline = wait_status(cluster, namespace, name, "Ready", lambda p: ready(p).get("status") == "True", 300)
        reason = next(c for c in pipeline["status"]["conditions"] if c["type"] == "Ready")["reason"]

        # While the steps sleep, the execution shows in the gauge of driven executions.
        running = wait_for(lambda: (lambda s: s if value(s, "stepflow_executions", phase="Executing") >= 1 else None)(
            hook.scrape()), 60, "stepflow_executions{phase=Executing} >= 1")
        assert ("Ready", "True", reason) in conditions(running, namespace, name)
        assert value(running, "stepflow_reconcile_duration_seconds_count", result="ready") > value(
            before, "stepflow_reconcile_duration_seconds_count", result="ready")
        for stage in STAGES:
            assert value(running, "stepflow_reconcile_stage_duration_seconds_count", stage=stage, result="ok") > value(
                before, "stepflow_reconcile_stage_duration_seconds_count", stage=stage, result="ok"), stage
        assert value(running, "stepflow_published_bytes_total") > value(before, "stepflow_published_bytes_total")

        execution = executions_of(cluster, namespace, name)[0]["metadata"]["name"]
        wait_ended(cluster, namespace, execution)
        done = wait_for(lambda: (lambda s: s if value(s, "stepflow_executions_finished_total", phase="Succeeded")
                                 > value(before, "stepflow_executions_finished_total", phase="Succeeded")
                                 else None)(hook.scrape()), 30, "the finished execution counted")
        steps = {k: value(done, f"stepflow_step_duration_seconds_{k}", backend="local", outcome="Succeeded")
                 - value(before, f"stepflow_step_duration_seconds_{k}", backend="local", outcome="Succeeded")
                 for k in ("count", "sum")}
        assert steps["count"] == 2, steps
        assert steps["sum"] >= 6, steps  # each step slept 3 s
        assert value(done, "stepflow_executions", phase="Executing") == 0
        print(f"FIGURE cluster metrics: reconciles ready "
              f"+{value(done, 'stepflow_reconcile_duration_seconds_count', result='ready') - value(before, 'stepflow_reconcile_duration_seconds_count', result='ready'):.0f}, "  # noqa: E501
              f"steps +{steps['count']:.0f} ({steps['sum']:.1f}s)")
    finally:
        hook.close()
        delete_stepflow_objects(cluster, namespace, "receiver/metrics", f"pipeline/{name}")


HANDOVER = '''
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
    time.sleep(3)
    return 1


@step(name="slow")
def slow(x: int) -> int:
    _mark("slow")
    time.sleep(3)
    client, deadline = _client(), time.monotonic() + 300
    while True:
        try:
            client.head_object(Bucket=S3["bucket"], Key="marks/go")
            return x + 1
        except ClientError:
            if time.monotonic() > deadline:
                raise TimeoutError("nobody wrote marks/go")
            time.sleep(0.1)


@step(name="third")
def third(x: int) -> int:
    _mark("third")
    time.sleep(3)
    return x * 10


@step(name="last")
def last(x: int) -> int:
    _mark("last")
    time.sleep(3)
    return x + 5


pipeline = Pipeline(name="{name}", steps=[last(third(slow(first())))])
'''
STEPS = ["first", "slow", "third", "last"]


def _step_phase(cluster: Cluster, namespace: str, execution: str, step: str) -> str | None:
    found = cluster.get(namespace, "pipelineexecution", execution)
    return next((s.get("phase") for s in (found.get("status") or {}).get("steps") or [] if s["name"] == step), None)


def _first_seen(log: str, since: float, markers: dict[str, str]) -> dict[str, float]:
    """Seconds from ``since`` to the first ``kubectl logs --timestamps`` line after it holding
    each marker (the node's clock is this machine's)."""
    seen: dict[str, float] = {}
    for line in log.splitlines():
        stamp, _, text = line.partition(" ")
        try:
            at = _micro(stamp[:26] + "Z" if len(stamp) > 27 else stamp)
        except ValueError:
            continue
        for key, marker in markers.items():
            if key not in seen and marker in text and at >= since:
                seen[key] = at - since
    return {k: seen[k] for k in markers if k in seen}


def _micro(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def test_the_standby_finishes_the_execution_of_a_killed_leader_and_no_step_runs_twice(
        cluster: Cluster, image, runner, pod_s3, repo, tmp_path: Path):
    """Backend kubernetes: the step that runs when the leader dies goes on in its Job, so the
    standby must adopt it, not start it again; a step in the leader's own pod (backend local)
    would die with it, and could only be run again."""
    namespace = f"ha-{secrets.token_hex(3)}"
    cluster.kubectl("create", "namespace", namespace)
    bucket = pod_s3.new_bucket("handover")
    s3 = {"endpoint_url": pod_s3.endpoint_url, "access_key": pod_s3.access_key,
          "secret_key": pod_s3.secret_key, "region": pod_s3.region}
    release = install_release(cluster, image, namespace, store=f"s3://{bucket.bucket}/stepflow", runner=runner, s3=s3,
                              values={"replicaCount": 2, "leaderElection": {"enabled": True}})
    try:
        leader = wait_for(lambda: leader_pod(cluster, release), 120, "a replica holding the Lease")
        pods = {p["metadata"]["name"]: p for p in operator_pods(cluster, release)}
        assert len(pods) == 2 and leader in pods, (leader, list(pods))
        standby = next(p for p in pods if p != leader)
        wait_for(lambda: "standing by" in release.pod_logs(standby), 120, f"pod {standby} standing by")

        name = f"handover-{secrets.token_hex(2)}"
        flow = repo("handover")
        flow.commit({"pipelines/flow.py": HANDOVER.format(s3={**s3, "bucket": bucket.bucket}, name=name)}, "slow")
        cluster.apply(namespace, pipeline_manifest(name, flow.url))
        execution = wait_for(lambda: executions_of(cluster, namespace, name), 300,
                             "the first execution")[0]["metadata"]["name"]
        wait_for(lambda: _step_phase(cluster, namespace, execution, "slow") == "Executing", 300, "step slow running")
        assert _step_phase(cluster, namespace, execution, "first") == "Succeeded"

        # SIGKILL of the leader's operator process (not tini, PID 1): no goodbye, no Lease
        # release, as when its node is lost. Its identity is <pod>_<random>_<pid>.
        holder = lease(cluster, release)["spec"]["holderIdentity"]
        pid = holder.rpartition("_")[2]
        killed = time.time()
        cluster.kubectl("-n", release.namespace, "exec", leader, "-c", "operator", "--", "python3", "-c",
                        f"import os, signal; os.kill({int(pid)}, signal.SIGKILL)")

        def taken() -> dict | None:
            spec = lease(cluster, release).get("spec") or {}
            return spec if spec.get("holderIdentity") not in (None, "", holder) else None

        spec = wait_for(taken, 120, "another replica taking the Lease")
        acquired = _micro(spec["acquireTime"]) - killed
        new_leader = spec["holderIdentity"].split("_", 1)[0]
        wait_for(lambda: f"resuming execution {execution}" in release.pod_logs(new_leader), 120,
                 f"pod {new_leader} resuming the execution")
        timing = lease(cluster, release)["spec"]["leaseDurationSeconds"]
        marks = _first_seen(release.pod_logs(new_leader, tail=2000, timestamps=True), killed, {
            "Lease held": " holds Lease ", "kopf started": "Activity 'startup' succeeded",
            "execution resumed": f"resuming execution {execution}"})
        who = "the standby" if new_leader == standby else "the restarted leader pod"
        print(f"FIGURE cluster leader SIGKILL -> Lease acquired by {who}: {acquired:.2f}s (acquireTime); from its "
              "log: " + ", ".join(f"{k} +{v:.2f}s" for k, v in marks.items()) + f" (leaseDuration {timing}s)")

        bucket.client().put_object(Bucket=bucket.bucket, Key="marks/go", Body=b"")
        done = wait_ended(cluster, namespace, execution, timeout=300)
        assert [(s["name"], s["phase"], s["attempts"]) for s in done["status"]["steps"]] == [
            (step, "Succeeded", 1) for step in STEPS]
        runs = {step: len(bucket.client().list_objects_v2(Bucket=bucket.bucket, Prefix=f"marks/{step}/")
                          .get("Contents", [])) for step in STEPS}
        assert runs == dict.fromkeys(STEPS, 1), runs
        jobs = cluster.get(namespace, "jobs", selector=f"stepflow.dev/execution={execution}")["items"]
        assert sorted(j["metadata"]["labels"]["stepflow.dev/step"] for j in jobs) == sorted(STEPS)
    finally:
        delete_stepflow_objects(cluster, namespace)
        uninstall_release(cluster, release)
        cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)
