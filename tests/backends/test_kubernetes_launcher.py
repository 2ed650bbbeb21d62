"""The Job launcher against a real API server (the ``kube`` fixture: no kubelet, so pods are
written here with the status a kubelet would give them).

What only running pods show (an OOM kill, a deadline, a real pull failure) is in
e2e/realpods/test_kubernetes_backend.py; here, idempotent creation, adoption by a second
launcher, the watch waking ``wait``, a stuck pod's Job deleted when its attempt is
forgotten, and stop deleting the Job.
"""

from __future__ import annotations

import secrets
import threading

import pytest
from tests.testenv import wait_for

from stepflow.backends.kubernetes.jobs import JobLauncher
from stepflow.backends.kubernetes.jobspec import StepPodSettings, job_manifest, job_name, labels
from stepflow.backends.kubernetes.resources import DEFAULT_INSTANCE_TYPES

ARGUMENTS = {"ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1}}
SETTINGS = StepPodSettings(runner_image="stepflow.test/runner:1", instance_types=DEFAULT_INSTANCE_TYPES)


@pytest.fixture
def namespace(kube) -> str:
    name = f"jobs-{secrets.token_hex(3)}"
    kube.kubectl("create", "namespace", name)
    return name


def _launcher(kube, namespace: str, execution: str) -> JobLauncher:
    def make(step: str, attempt: int, arguments, environment=None) -> dict:
        return job_manifest(pipeline="p", execution_id=execution, step=step, attempt=attempt, arguments=ARGUMENTS,
                            container_arguments=list(arguments), settings=SETTINGS)

    return JobLauncher(kube.new_api_client(), namespace, "p", execution, make)


def _pod(execution: str, step: str, attempt: int) -> dict:
    name = job_name(execution, step, attempt)
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"{name}-x", "labels": {**labels("p", execution, step, attempt), "job-name": name}},
            "spec": {"containers": [{"name": "step", "image": "stepflow.test/nope:1"}]}}


def test_creation_is_idempotent_and_a_second_launcher_adopts_the_job(kube, namespace):
    execution = f"e-{secrets.token_hex(2)}"
    first = _launcher(kube, namespace, execution)
    try:
        first.launch(execution, "train", 1, ["--a"])
        first.launch(execution, "train", 1, ["--a"])  # 409: already there, fine
        assert first.status(execution, "train", 1).state == "running"
        assert first.status(execution, "train", 2) is None  # never launched
    finally:
        first.close()
    successor = _launcher(kube, namespace, execution)  # a restarted orchestrator
    try:
        assert successor.status(execution, "train", 1).state == "running"
        jobs = kube.kubectl("-n", namespace, "get", "jobs", "-o", "name").stdout.split()
        assert jobs == [f"job.batch/{job_name(execution, 'train', 1)}"]
    finally:
        successor.close()


def test_the_watch_wakes_wait_and_a_stuck_pod_ends_the_attempt(kube, namespace):
    import json

    execution = f"e-{secrets.token_hex(2)}"
    launcher = _launcher(kube, namespace, execution)
    try:
        wait_for(launcher.pods.synced.is_set, 30, message="the pod watch listing")
        launcher.launch(execution, "train", 1, [])
        pod = _pod(execution, "train", 1)
        kube.kubectl("-n", namespace, "create", "-f", "-", input=json.dumps(pod))
        status = {"status": {"phase": "Pending", "containerStatuses": [{
            "name": "step", "image": "stepflow.test/nope:1", "imageID": "", "ready": False, "restartCount": 0,
            "state": {"waiting": {"reason": "ErrImageNeverPull", "message": "image not present"}}}]}}
        woke = threading.Event()

        def waiter() -> None:
            launcher.wait(120)
            woke.set()

        launcher._changed.clear()
        thread = threading.Thread(target=waiter, daemon=True)
        thread.start()
        kube.kubectl("-n", namespace, "patch", "pod", pod["metadata"]["name"], "--subresource=status",
                     "--type=merge", "-p", json.dumps(status))
        wait_for(woke.is_set, 60, message="wait() woken by the pod's change")
        wait_for(lambda: (launcher.status(execution, "train", 1).state == "exited"), 30, message="the verdict")
        verdict = launcher.status(execution, "train", 1)
        assert verdict.reason.startswith("ImagePullFailed: image 'stepflow.test/nope:1'") and verdict.kind == "User"
        launcher.forget(execution, "train", 1)  # the orchestrator is done with it: the Job goes
        job = json.loads(kube.kubectl("-n", namespace, "get", "job", job_name(execution, "train", 1), "-o",
                                      "json", check=False).stdout or "{}")
        assert not job or job["metadata"].get("deletionTimestamp")  # no garbage collector here to finish it
    finally:
        launcher.close()


def test_a_job_the_api_server_refuses_fails_its_attempt_with_the_reason(kube, namespace):
    execution = f"e-{secrets.token_hex(2)}"

    def make(step: str, attempt: int, arguments, environment=None) -> dict:
        job = job_manifest(pipeline="p", execution_id=execution, step=step, attempt=attempt, arguments=ARGUMENTS,
                           container_arguments=[], settings=SETTINGS,
                           overrides={"podTemplate": {"spec": {"restartPolicy": "Sometimes"}}})
        return job

    launcher = JobLauncher(kube.new_api_client(), namespace, "p", execution, make)
    try:
        launcher.launch(execution, "train", 1, [])
        verdict = launcher.status(execution, "train", 1)
        assert verdict.state == "exited" and verdict.kind == "User"
        assert verdict.reason.startswith("JobRejected: ") and "restartPolicy" in verdict.reason
    finally:
        launcher.close()


def test_stop_deletes_the_job(kube, namespace):
    import json

    execution = f"e-{secrets.token_hex(2)}"
    launcher = _launcher(kube, namespace, execution)
    try:
        launcher.launch(execution, "train", 1, [])
        launcher.stop(execution, "train", 1)
        launcher.stop(execution, "train", 1)  # twice: still fine
        job = json.loads(kube.kubectl("-n", namespace, "get", "job", job_name(execution, "train", 1), "-o",
                                      "json", check=False).stdout or "{}")
        assert not job or job["metadata"].get("deletionTimestamp")
    finally:
        launcher.close()
