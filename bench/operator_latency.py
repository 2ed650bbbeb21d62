"""Operator benchmark: push → Ready latency, and a resync of many unchanged Pipelines.

Starts the test environment's real servers (etcd + kube-apiserver, versitygw, the git
smart-HTTP server) and runs ``python -m stepflow_operator`` as a separate process, as the
operator tests do. Two figures:

* ``latency``: one Pipeline polling every 1 s; after each ``git push`` of a changed module,
  the time until the Pipeline reports Ready=True on the new short revision (watched by
  polling the API server every 20 ms). The goal is under 3 s.
* ``webhook``: the same through a GitHub-signed push webhook to the operator's receiver
  (the Pipeline polls hourly, so only the webhook can explain a fast Ready): from the POST
  right after ``git push`` to Ready on the new revision, each push once the previous
  push's execution has ended (its steps would compete for the CPUs). The goal is under 2 s.
  Measured in one run by two operators side by side, pushes interleaved: one with a fresh
  interpreter per build (``STEPFLOW_BUILD_WARM=0``, the baseline), one with the warm build
  worker; with their ratio, each with the median seconds of every reconcile stage (the
  operator's own metrics) and of the moment the operator was seen working on the new
  revision (``seen_reconciling``).
* ``resync``: N Pipelines (one repository each, ``onChange: false`` so no execution runs)
  built once; then a fresh operator process starts and re-checks every one of them. The
  time until every Pipeline's ``status.source.fetchedAt`` is newer than that start, and
  the operator's RSS (its own process; builds and steps are separate processes) and CPU.

Run from the repository root (as root, the sandbox needs a system python3.X):

    .venv/bin/python bench/operator_latency.py                  # 5 pushes, 200 Pipelines
    .venv/bin/python bench/operator_latency.py --pushes 3 --pipelines 50 --json out.json
    .venv/bin/python bench/operator_latency.py --figures webhook --pushes 5
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.testenv import free_port, wait_for  # noqa: E402
from tests.testenv.git import GitRemote, GitServer  # noqa: E402
from tests.testenv.kube import Kube  # noqa: E402
from tests.testenv.s3 import S3Server  # noqa: E402
from tests.testenv.samples import TWO_STEPS as MODULE  # noqa: E402

from stepflow import timefmt  # noqa: E402

BUILD_PYTHON = f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}"


class Env:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.kube = Kube(base / "kube").start()
        self.kube.apply_crds()
        self.s3 = S3Server(base / "s3").start()
        self.git = GitServer(base / "git").start()

    def stop(self) -> None:
        self.git.stop()
        self.s3.stop()
        self.kube.stop()


def _namespace(env: Env) -> str:
    name = f"bench-{secrets.token_hex(3)}"
    env.kube.kubectl("create", "namespace", name)
    return name


def _operator(env: Env, namespace: str, bucket: Any, work: Path, log: Path,
              receiver_port: int | None = None, metrics_port: int | None = None,
              extra: dict[str, str] | None = None) -> subprocess.Popen:
    environment = {**os.environ, **env.kube.env, **bucket.env(), "STEPFLOW_CACHE_DIR": str(work),
                   "STEPFLOW_S3_ROOT_URI": bucket.root_uri, "STEPFLOW_BUILD_PYTHON": BUILD_PYTHON,
                   "STEPFLOW_METRICS_ADDRESS": f"127.0.0.1:{metrics_port}" if metrics_port else "off",
                   "STEPFLOW_RECEIVER_ADDRESS": f"127.0.0.1:{receiver_port}" if receiver_port else "off",
                   **(extra or {})}
    out = open(log, "ab")  # noqa: SIM115 - the child keeps it
    return subprocess.Popen([sys.executable, "-m", "stepflow_operator", "--standalone",
                             f"--namespace={namespace}"], env=environment, stdout=out, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _manifest(name: str, url: str, on_change: bool, interval: str) -> dict:
    return {"apiVersion": "stepflow.dev/v1alpha1", "kind": "Pipeline", "metadata": {"name": name},
            "spec": {"source": {"url": url, "ref": {"branch": "main"}, "interval": interval},
                     "module": "pipelines/flow.py", "trigger": {"onChange": on_change}}}


def _apply(env: Env, namespace: str, manifests: list[dict]) -> None:
    env.kube.kubectl("-n", namespace, "apply", "-f", "-",
                     input=json.dumps({"apiVersion": "v1", "kind": "List", "items": manifests}), timeout=300)


def _pipelines(api: Any, namespace: str) -> list[dict]:
    return api.list_namespaced_custom_object("stepflow.dev", "v1alpha1", namespace, "pipelines")["items"]


def _stage_seconds(metrics_port: int) -> dict[str, float]:
    """The operator's cumulative seconds per reconcile stage, and of whole reconciles."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as response:
        text = response.read().decode()
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "stepflow_reconcile_stage_duration_seconds_sum":
                stage = sample.labels["stage"]
                totals[stage] = totals.get(stage, 0.0) + sample.value
            elif sample.name == "stepflow_reconcile_duration_seconds_sum":
                totals["reconcile"] = totals.get("reconcile", 0.0) + sample.value
    return totals


def _building(item: dict, short: str) -> bool:
    """The operator has started on ``short``: the reconcile's progress patch says so."""
    status = item.get("status") or {}
    reconciling = next((c for c in status.get("conditions") or () if c["type"] == "Reconciling"), {})
    return reconciling.get("status") == "True" and short in (reconciling.get("message") or "")


def _executions_ended(api: Any, namespace: str) -> bool:
    from stepflow.gitops.execution_status import TERMINAL_PHASES

    items = api.list_namespaced_custom_object("stepflow.dev", "v1alpha1", namespace, "pipelineexecutions")["items"]
    return all((item.get("status") or {}).get("phase") in TERMINAL_PHASES for item in items)


def _until_ready(get: Any, short: str, since: float) -> tuple[float, float]:
    """Seconds from ``since`` until Ready on ``short``, and until the operator was seen on it."""
    seen: list[float] = []

    def ready() -> bool:
        item = get()
        if not seen and (_building(item, short) or _ready_on(item, short)):
            seen.append(time.monotonic() - since)
        return _ready_on(item, short)
    wait_for(ready, 60, 0.02, f"Ready on {short}")
    return time.monotonic() - since, seen[0]


def _ready_on(item: dict, short: str | None = None) -> bool:
    status = item.get("status") or {}
    ready = next((c for c in status.get("conditions") or () if c["type"] == "Ready"), {})
    return ready.get("status") == "True" and (short is None or (status.get("summary") or {}).get("revision") == short)


def latency(env: Env, pushes: int) -> dict[str, Any]:
    from kubernetes import client

    api = client.CustomObjectsApi(env.kube.new_api_client())
    namespace, bucket = _namespace(env), env.s3.new_bucket("latency")
    remote = GitRemote(env.git, f"latency-{secrets.token_hex(3)}")
    remote.commit({"pipelines/flow.py": MODULE.format(factor=0, name="latency")}, "v0")
    _apply(env, namespace, [_manifest("latency", remote.url, True, "1s")])
    work = Path(tempfile.mkdtemp(prefix="latency-", dir="/var/tmp"))
    work.chmod(0o711)
    proc = _operator(env, namespace, bucket, work / "work", env.base / "latency-operator.log")
    try:
        get = lambda: api.get_namespaced_custom_object("stepflow.dev", "v1alpha1", namespace, "pipelines", "latency")  # noqa: E731
        wait_for(lambda: _ready_on(get()), 120, 0.05, "first Ready")
        samples = []
        for i in range(1, pushes + 1):
            sha = remote.commit({"pipelines/flow.py": MODULE.format(factor=i, name="latency")}, f"v{i}")
            pushed = time.monotonic()
            wait_for(lambda sha=sha: _ready_on(get(), sha[:7]), 60, 0.02, f"Ready on {sha[:7]}")
            samples.append(time.monotonic() - pushed)
    finally:
        _stop(proc)
        shutil.rmtree(work, ignore_errors=True)
    return {"pushes": pushes, "seconds": [round(s, 3) for s in samples],
            "median": round(statistics.median(samples), 3), "max": round(max(samples), 3)}


def webhook(env: Env, pushes: int) -> dict[str, Any]:
    """The figure with fresh-interpreter builds (the baseline, ``STEPFLOW_BUILD_WARM=0``) and
    with the warm build worker: two operators side by side, their pushes interleaved, so
    both meet the same load."""
    rigs = {False: _WebhookRig(env, warm=False), True: _WebhookRig(env, warm=True)}
    try:
        for rig in rigs.values():
            rig.ready()
        for i in range(1, pushes + 1):
            for rig in rigs.values():
                rig.push(i)
    finally:
        for rig in rigs.values():
            rig.stop()
    cold, warm = rigs[False].summary(), rigs[True].summary()
    return {"cold": cold, "warm": warm, "warm_over_cold_median": round(warm["median"] / cold["median"], 3)}


class _WebhookRig:
    """One operator, one Pipeline polling hourly, a GitHub Receiver; pushes through the webhook."""

    def __init__(self, env: Env, *, warm: bool) -> None:
        import base64

        from kubernetes import client

        self.api = client.CustomObjectsApi(env.kube.new_api_client())
        self.namespace, bucket = _namespace(env), env.s3.new_bucket("webhook")
        self.remote = GitRemote(env.git, f"webhook-{secrets.token_hex(3)}")
        self.remote.commit({"pipelines/flow.py": MODULE.format(factor=0, name="webhook")}, "v0")
        self.token = secrets.token_urlsafe(24)
        _apply(env, self.namespace, [
            _manifest("webhook", self.remote.url, True, "1h"),
            {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "hook"},
             "data": {"token": base64.b64encode(self.token.encode()).decode()}},
            {"apiVersion": "stepflow.dev/v1alpha1", "kind": "Receiver", "metadata": {"name": "gh"},
             "spec": {"type": "github", "secretRef": {"name": "hook"}}}])
        self.work = Path(tempfile.mkdtemp(prefix="webhook-", dir="/var/tmp"))
        self.work.chmod(0o711)
        self.port, self.metrics_port = free_port(), free_port()
        log = env.base / f"webhook-{'warm' if warm else 'cold'}-operator.log"
        self.proc = _operator(env, self.namespace, bucket, self.work / "work", log, receiver_port=self.port,
                              metrics_port=self.metrics_port, extra={"STEPFLOW_BUILD_WARM": "1" if warm else "0"})
        self.samples: list[float] = []
        self.breakdown: list[dict[str, float]] = []
        self.path = ""

    def get(self) -> dict:
        return self.api.get_namespaced_custom_object("stepflow.dev", "v1alpha1", self.namespace, "pipelines",
                                                     "webhook")

    def ready(self) -> None:
        wait_for(lambda: _ready_on(self.get()), 120, 0.05, "first Ready")
        wait_for(lambda: _executions_ended(self.api, self.namespace), 120, 0.1, "the first execution to end")
        self.path = wait_for(lambda: (self.api.get_namespaced_custom_object(
            "stepflow.dev", "v1alpha1", self.namespace, "receivers", "gh").get("status") or {}).get("webhookPath"),
            60, 0.1, "the webhook path")

    def push(self, i: int) -> None:
        import urllib.request

        from stepflow.gitops.push_events import sign

        sha = self.remote.commit({"pipelines/flow.py": MODULE.format(factor=i, name="webhook")}, f"v{i}")
        body = json.dumps({"ref": "refs/heads/main", "after": sha,
                           "repository": {"clone_url": self.remote.url}}).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{self.path}", data=body, method="POST",
            headers={"X-GitHub-Event": "push", "X-Hub-Signature-256": "sha256=" + sign(self.token.encode(), body)})
        before = _stage_seconds(self.metrics_port)
        posted = time.monotonic()
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 202, response.status
        total, seen = _until_ready(self.get, sha[:7], posted)
        self.samples.append(total)
        # The push's execution (onChange) runs its steps as processes on these 2 cores: let it
        # end, so each push meets an idle operator (not the previous push's steps).
        wait_for(lambda: _executions_ended(self.api, self.namespace), 120, 0.1, "the push's execution to end")
        after = _stage_seconds(self.metrics_port)
        stages = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in after}
        stages["seen_reconciling"] = seen
        self.breakdown.append(stages)

    def stop(self) -> None:
        _stop(self.proc)
        shutil.rmtree(self.work, ignore_errors=True)

    def summary(self) -> dict[str, Any]:
        keys = sorted({k for b in self.breakdown for k in b})
        return {"pushes": len(self.samples), "seconds": [round(s, 3) for s in self.samples],
                "median": round(statistics.median(self.samples), 3), "max": round(max(self.samples), 3),
                # Per push, median seconds: each reconcile stage (the operator's metrics), the
                # whole reconcile, and when the progress patch (Reconciling on the new revision)
                # was seen.
                "breakdown_median": {k: round(statistics.median(b.get(k, 0.0) for b in self.breakdown), 3)
                                     for k in keys}}


def resync(env: Env, count: int) -> dict[str, Any]:
    import psutil
    from kubernetes import client

    api = client.CustomObjectsApi(env.kube.new_api_client())
    namespace, bucket = _namespace(env), env.s3.new_bucket("resync")
    manifests = []
    for i in range(count):
        remote = GitRemote(env.git, f"resync-{i}-{secrets.token_hex(2)}")
        remote.commit({"pipelines/flow.py": MODULE.format(factor=1, name=f"p{i}")}, "v1")
        manifests.append(_manifest(f"p{i}", remote.url, False, "10m"))
    _apply(env, namespace, manifests)
    work = Path(tempfile.mkdtemp(prefix="resync-", dir="/var/tmp"))
    work.chmod(0o711)
    try:
        started = time.monotonic()
        proc = _operator(env, namespace, bucket, work / "work", env.base / "resync-operator-1.log")
        wait_for(lambda: sum(_ready_on(p) for p in _pipelines(api, namespace)) == count, 1800, 1.0,
                 f"{count} Pipelines built")
        first_build = time.monotonic() - started
        _stop(proc)

        since = datetime.now(UTC).replace(microsecond=0)
        started = time.monotonic()
        proc = _operator(env, namespace, bucket, work / "work", env.base / "resync-operator-2.log")

        def fresh() -> bool:
            stamps = [((p.get("status") or {}).get("source") or {}).get("fetchedAt")
                      for p in _pipelines(api, namespace)]
            return all(s and timefmt.parse(s) >= since
                       for s in stamps)
        wait_for(fresh, 600, 0.2, f"{count} Pipelines re-checked")
        seconds = time.monotonic() - started
        process = psutil.Process(proc.pid)
        rss, cpu = process.memory_info().rss, process.cpu_times()
        builds = sum(1 for p in _pipelines(api, namespace)
                     if (p["status"].get("lastBuild") or {}).get("startedAt", "") >= timefmt.seconds(since))
        _stop(proc)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {"pipelines": count, "first_build_seconds": round(first_build, 1), "resync_seconds": round(seconds, 2),
            "rebuilt": builds, "operator_rss_mib": round(rss / 2**20, 1),
            "operator_cpu_seconds": round(cpu.user + cpu.system, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pushes", type=int, default=5)
    parser.add_argument("--pipelines", type=int, default=200)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--logs", type=Path, help="copy the operators' logs into this folder")
    parser.add_argument("--figures", default="latency,webhook,resync",
                        help="comma-separated: latency, webhook, resync (default: all)")
    args = parser.parse_args()
    figures = {"latency": lambda: latency(env, args.pushes), "webhook": lambda: webhook(env, args.pushes),
               "resync": lambda: resync(env, args.pipelines)}
    chosen = [f.strip() for f in args.figures.split(",") if f.strip()]
    if unknown := set(chosen) - set(figures):
        parser.error(f"--figures: unknown {sorted(unknown)}; choose among {sorted(figures)}")
    base = Path(tempfile.mkdtemp(prefix="stepflow-bench-op-"))
    env = Env(base)
    results: dict[str, Any] = {}
    try:
        for figure in chosen:
            results[figure] = figures[figure]()
            print(json.dumps({figure: results[figure]}), flush=True)
    finally:
        env.stop()
        if args.logs:
            args.logs.mkdir(parents=True, exist_ok=True)
            for log in base.glob("*-operator*.log"):
                shutil.copy(log, args.logs / log.name)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
