"""What the operations scenarios on the cluster (test_operations.py) and the cluster's
webhook benchmark (bench/cluster_webhook.py) share: reaching an operator pod's ports from
here, the leader of a release, and a push webhook driven end to end.

The host reaches pods only through the API server, as the rest of the suite does (``kubectl
exec`` for git, here ``kubectl port-forward``): the forwarded port listens on loopback, the
kubelet carries the stream into the pod's network namespace. Nothing here needs a route to
the pod network, and no Service ClusterIP works from the host (there is no kube-proxy).
"""

from __future__ import annotations

import base64
import json
import selectors
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from tests.operator.world import Samples, scrape, value

from e2e.cluster import Cluster, Release, wait_for
from e2e.test_kind_gitops import ready
from stepflow.gitops.push_events import sign

#: The stages of a reconcile the operator times (stepflow_reconcile_stage_duration_seconds).
STAGES = ("resolve", "fetch", "build", "publish")
RECONCILE_ANNOTATION = "stepflow.dev/reconcile-requested-at"


@contextmanager
def port_forward(cluster: Cluster, namespace: str, target: str, port: int | str,
                 timeout: float = 30) -> Iterator[int]:
    """``kubectl port-forward TARGET :PORT`` on 127.0.0.1; yields the local port.

    ``target`` is ``pod/NAME`` or ``svc/NAME`` (a Service picks one of its ready pods once)."""
    proc = subprocess.Popen([cluster.tools.kubectl, "--kubeconfig", str(cluster.kubeconfig), "-n", namespace,
                             "port-forward", "--address", "127.0.0.1", target, f":{port}"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        local = _forwarded_port(proc, timeout)
        yield local
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _forwarded_port(proc: subprocess.Popen, timeout: float) -> int:
    """The port of kubectl's ``Forwarding from 127.0.0.1:PORT -> ...`` line."""
    assert proc.stdout is not None and proc.stderr is not None
    selector = selectors.DefaultSelector()
    selector.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not selector.select(max(0.0, deadline - time.monotonic())):
            break
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"kubectl port-forward exited {proc.wait()}: {proc.stderr.read()}")
        if line.startswith("Forwarding from 127.0.0.1:"):
            return int(line.split(":", 1)[1].split(" ", 1)[0])
    raise TimeoutError(f"kubectl port-forward printed no forwarded port within {timeout:g}s")


def post(url: str, body: bytes, headers: dict[str, str]) -> int:
    """POST ``body``; the answer's status code."""
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": "application/json", **headers})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def github_push(token: str, clone_url: str, after: str, ref: str = "refs/heads/main") -> tuple[bytes, dict]:
    """A GitHub push event and its headers, signed with ``token`` (X-Hub-Signature-256)."""
    body = json.dumps({"ref": ref, "after": after, "repository": {"clone_url": clone_url}}).encode()
    return body, {"X-GitHub-Event": "push", "X-Hub-Signature-256": "sha256=" + sign(token.encode(), body)}


def operator_pods(cluster: Cluster, release: Release) -> list[dict]:
    return cluster.get(release.namespace, "pods", selector=f"app.kubernetes.io/instance={release.name}")["items"]


def lease(cluster: Cluster, release: Release) -> dict:
    """The release's leader-election Lease (named after the Deployment), {} before any."""
    name = release.deployment["metadata"]["name"]
    proc = cluster.kubectl("-n", release.namespace, "get", "lease", name, "-o", "json", check=False)
    return json.loads(proc.stdout) if proc.returncode == 0 else {}


def leader_pod(cluster: Cluster, release: Release) -> str | None:
    """The pod holding the Lease: its identity is ``<pod name>_<random>_<pid>``."""
    holder = (lease(cluster, release).get("spec") or {}).get("holderIdentity") or ""
    return holder.split("_", 1)[0] or None


def delete_stepflow_objects(cluster: Cluster, namespace: str, *names: str) -> None:
    """Delete the stepflow objects (all, or ``kind/name``s) while the operator still runs: it
    owns their finalizer, and a namespace deleted after the release would hang Terminating."""
    targets = list(names) or ["pipelines,pipelineexecutions,receivers", "--all"]
    cluster.kubectl("-n", namespace, "delete", *targets, "--ignore-not-found", "--timeout=120s", timeout=150,
                    check=False)


def stage_seconds(before: Samples, after: Samples) -> dict[str, float]:
    """Seconds spent in each reconcile stage between two scrapes, and in whole reconciles."""
    spent = {stage: value(after, "stepflow_reconcile_stage_duration_seconds_sum", stage=stage)
             - value(before, "stepflow_reconcile_stage_duration_seconds_sum", stage=stage) for stage in STAGES}
    spent["reconcile"] = (value(after, "stepflow_reconcile_duration_seconds_sum")
                          - value(before, "stepflow_reconcile_duration_seconds_sum"))
    return spent


@dataclass
class Webhook:
    """A GitHub Receiver in ``namespace`` and the release's receiver Service forwarded here."""

    cluster: Cluster
    release: Release
    namespace: str
    token: str
    path: str = ""
    receiver_port: int = 0
    metrics_port: int = 0
    _stack: list = field(default_factory=list)

    def setup(self, name: str = "github") -> Webhook:
        self.cluster.apply(self.namespace,
                           {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": f"{name}-token"},
                            "data": {"token": base64.b64encode(self.token.encode()).decode()}},
                           {"apiVersion": "stepflow.dev/v1alpha1", "kind": "Receiver", "metadata": {"name": name},
                            "spec": {"type": "github", "secretRef": {"name": f"{name}-token"}}})
        found = wait_for(lambda: (self.cluster.get(self.namespace, "receiver", name).get("status") or {})
                         .get("webhookPath"), 60, f"Receiver {name}'s webhook path")
        self.path = str(found)
        fullname = self.release.deployment["metadata"]["name"]
        try:
            for attr, target, port in (("receiver_port", f"svc/{fullname}-receiver", 80),
                                       ("metrics_port", f"svc/{fullname}-metrics", "metrics")):
                manager = port_forward(self.cluster, self.release.namespace, target, port)
                setattr(self, attr, manager.__enter__())
                self._stack.append(manager)
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        while self._stack:
            self._stack.pop().__exit__(None, None, None)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.receiver_port}{self.path}"

    def scrape(self) -> Samples:
        return scrape(self.metrics_port)


def ready_on(pipeline: dict, short: str) -> bool:
    return ((pipeline.get("status") or {}).get("summary") or {}).get("revision") == short and \
        ready(pipeline).get("status") == "True"
