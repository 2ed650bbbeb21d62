"""Push webhooks through a real operator process: real HTTP requests to its receiver port."""

from __future__ import annotations

import base64
import json
import time
import urllib.error
import urllib.request

from tests.operator.world import World, pipeline_manifest, scrape, value
from tests.testenv import free_port
from tests.testenv.samples import TWO_STEPS

from stepflow.gitops.push_events import sign

TOKEN = "wh-" + "x7Qk2pZr9vLm4sTb"


def post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, str]:
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": "application/json", **headers})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def github(event: str, body: bytes, token: str = TOKEN) -> dict[str, str]:
    return {"X-GitHub-Event": event, "X-Hub-Signature-256": "sha256=" + sign(token.encode(), body)}


def push_body(url: str, ref: str = "refs/heads/main") -> bytes:
    # ssh_url in scp form: matching normalises the transport away.
    return json.dumps({"ref": ref, "after": "0" * 40, "marker": "PAYLOAD-MARKER-91",
                       "repository": {"clone_url": url, "ssh_url": "git@elsewhere.example:x/y.git"}}).encode()


def setup_receiver(world: World, type_: str = "github") -> str:
    world.apply({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "webhook-token"},
                 "data": {"token": base64.b64encode(TOKEN.encode()).decode()}})
    world.apply({"apiVersion": "stepflow.dev/v1alpha1", "kind": "Receiver", "metadata": {"name": "gh"},
                 "spec": {"type": type_, "secretRef": {"name": "webhook-token"}}})
    receiver = world.wait(lambda: next((r for r in [world.get("receiver", "gh")]
                                        if (r.get("status") or {}).get("webhookPath")), None),
                          30, "the Receiver's webhook path")
    return receiver["status"]["webhookPath"]


def test_a_signed_push_reconciles_the_matching_pipelines_at_once(world: World, git_remote):
    metrics_port, receiver_port = free_port(), free_port()
    first = git_remote.commit({"pipelines/flow.py": TWO_STEPS.format(factor=1, name="flow")}, "v1")
    hour = {"interval": "1h"}  # polling would not see the next commit during this test
    world.apply(pipeline_manifest("flow", git_remote.url, source=hour))
    world.apply(pipeline_manifest("other-branch", git_remote.url, source={**hour, "ref": {"branch": "dev"}}))
    world.operator(STEPFLOW_METRICS_ADDRESS=f"127.0.0.1:{metrics_port}",
                   STEPFLOW_RECEIVER_ADDRESS=f"127.0.0.1:{receiver_port}")
    path = setup_receiver(world)
    assert TOKEN not in path
    base = f"http://127.0.0.1:{receiver_port}"
    world.wait_ready("flow", summary__revision=first[:7])

    second = git_remote.commit({"pipelines/flow.py": TWO_STEPS.format(factor=2, name="flow")}, "v2")
    body = push_body(git_remote.url)
    began = time.monotonic()
    status, _ = post(base + path, body, github("push", body))
    assert status == 202
    ready = world.wait_ready("flow", timeout=30, summary__revision=second[:7])
    elapsed = time.monotonic() - began
    build = ready["status"]["lastBuild"]["durationSeconds"]
    print(f"FIGURE webhook push -> Ready on the new revision: {elapsed:.2f}s (of which the sandbox build {build:.2f}s)")
    other = world.get("pipeline", "other-branch")
    assert "stepflow.dev/reconcile-requested-at" not in (other["metadata"].get("annotations") or {})

    ping = b'{"zen": "hi"}'
    assert post(base + path, ping, github("ping", ping))[0] == 200
    assert post(base + path, b"{}", github("issues", b"{}"))[0] == 202
    assert post(base + path, body, {"X-GitHub-Event": "push"})[0] == 401
    assert post(base + path, body, github("push", body, token="wrong"))[0] == 403
    assert post(base + "/hook/" + "0" * 64, body, github("push", body))[0] == 404
    big = b"{" + b" " * (1 << 20) + b"}"
    assert post(base + path, big, github("push", big))[0] == 413

    codes = [post(base + path, ping, github("ping", ping))[0] for _ in range(60)]
    assert 429 in codes and set(codes) <= {200, 429}, codes

    samples = scrape(metrics_port)
    label = f"{world.namespace}/gh"
    for result, least in [("accepted", 1), ("ping", 1), ("ignored", 1), ("unsigned", 1), ("bad_signature", 1),
                          ("too_large", 1), ("rate_limited", 1)]:
        assert value(samples, "stepflow_webhook_requests_total", receiver=label, result=result) >= least, result
    assert value(samples, "stepflow_webhook_requests_total", receiver="", result="not_found") == 1

    log = world.log_text()
    assert TOKEN not in log and "PAYLOAD-MARKER-91" not in log and path not in log


def test_a_receiver_without_its_secret_is_not_ready_and_serves_nothing(world: World):
    receiver_port = free_port()
    world.apply({"apiVersion": "stepflow.dev/v1alpha1", "kind": "Receiver", "metadata": {"name": "gl"},
                 "spec": {"type": "gitlab", "secretRef": {"name": "missing"}}})
    world.operator(STEPFLOW_METRICS_ADDRESS="off", STEPFLOW_RECEIVER_ADDRESS=f"127.0.0.1:{receiver_port}")

    def not_ready() -> dict | None:
        conditions = (world.get("receiver", "gl").get("status") or {}).get("conditions") or []
        return next((c for c in conditions if c["type"] == "Ready" and c["status"] == "False"), None)

    ready = world.wait(not_ready, 30, "Receiver Ready=False")
    assert ready["reason"] == "SecretNotFound" and "kubectl" in ready["message"]
    path_if_created = "/hook/" + "1" * 64
    assert post(f"http://127.0.0.1:{receiver_port}{path_if_created}", b"{}", {"X-Gitlab-Token": "t"})[0] == 404
