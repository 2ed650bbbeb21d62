"""``stepflow run --backend kubernetes`` from this machine, as a data scientist runs it from a
laptop: the orchestrator in the CLI's process, a Job per step in the kubeconfig's cluster,
the store on the S3 server the pods reach (the bridge gateway). No operator involved.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from e2e.cluster import Cluster, wait_for

STEPFLOW = str(Path(sys.executable).parent / "stepflow")

FLOW = textwrap.dedent("""
    from stepflow import Pipeline, step

    @step(name="source")
    def source():
        return [1, 2, 3]

    @step
    def square(xs, i):
        return [x * x + i for x in xs]

    @step(name="total")
    def total(*parts):
        import socket
        return {"sum": sum(sum(p) for p in parts), "host": socket.gethostname()}

    xs = source()
    pipeline = Pipeline(name="laptop", steps=[total(*[square(xs, i) for i in range(3)])])
""")


@pytest.fixture
def laptop(cluster: Cluster, runner: str, pod_s3, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[tuple[dict[str, str], str, Path]]:
    """A namespace with the step Secrets, and the environment a laptop would have."""
    namespace = f"run-{secrets.token_hex(3)}"
    work = tmp_path_factory.mktemp("laptop")
    work.chmod(0o755)  # steps of the local backend would run as another user; keep it reachable
    bucket = pod_s3.new_bucket("laptop")
    key = secrets.token_hex(32)
    cluster.kubectl("create", "namespace", namespace)
    cluster.kubectl("-n", namespace, "create", "secret", "generic", "s3",
                    f"--from-literal=AWS_ACCESS_KEY_ID={pod_s3.access_key}",
                    f"--from-literal=AWS_SECRET_ACCESS_KEY={pod_s3.secret_key}")
    cluster.kubectl("-n", namespace, "create", "secret", "generic", "signing", f"--from-literal=key={key}")
    types = work / "types.yaml"
    types.write_text("ml.m5.large: {cpu: 50m, memory: 256Mi}\n")
    env = {**os.environ, **pod_s3.env(), "KUBECONFIG": str(cluster.kubeconfig),
           "STEPFLOW_S3_ROOT_URI": f"s3://{bucket.bucket}/laptop", "STEPFLOW_INTEGRITY_KEY": key,
           "STEPFLOW_RUNNER_IMAGE": runner, "STEPFLOW_RUNNER_PULL_POLICY": "Never",
           "STEPFLOW_STEP_S3_CREDENTIALS_SECRET": "s3", "STEPFLOW_STEP_INTEGRITY_KEY_SECRET": "signing",
           "STEPFLOW_INSTANCE_TYPES_FILE": str(types), "STEPFLOW_CACHE_DIR": str(work / "cache"),
           "STEPFLOW_STEP_MAX_PARALLEL_JOBS": "2", "AWS_REGION": pod_s3.region}
    try:
        yield env, namespace, work
    finally:
        cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def test_stepflow_run_backend_kubernetes_runs_each_step_as_a_job(cluster: Cluster, laptop):
    env, namespace, work = laptop
    (work / "flow.py").write_text(FLOW)
    proc = subprocess.run([STEPFLOW, "run", "flow.py", "-o", "json", "--backend", "kubernetes",
                           "--namespace", namespace], env=env, cwd=work, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout)
    assert summary["status"] == "Succeeded", summary
    assert {s["name"]: (s["status"], s["attempts"]) for s in summary["steps"]} == {
        "source": ("Succeeded", 1), "square": ("Succeeded", 1), "square-2": ("Succeeded", 1),
        "square-3": ("Succeeded", 1), "total": ("Succeeded", 1)}

    def jobs() -> list[dict]:
        return cluster.get(namespace, "jobs", selector=f"stepflow.dev/execution={summary['executionId']}")["items"]

    by_step = {j["metadata"]["labels"]["stepflow.dev/step"]: j for j in jobs()}
    assert sorted(by_step) == ["source", "square", "square-2", "square-3", "total"]
    assert all(j["metadata"]["labels"]["stepflow.dev/attempt"] == "1" for j in by_step.values())
    # The run ends at the last attempt's record; its pod may still be exiting a moment longer.
    wait_for(lambda: all(j["status"].get("succeeded") == 1 for j in jobs()), 120, "every Job Complete")

    # The three branches were ready together; STEPFLOW_STEP_MAX_PARALLEL_JOBS=2 ran them two at a time.
    spans = sorted((s["startTime"], s["endTime"]) for s in summary["steps"] if s["name"].startswith("square"))
    assert spans[2][0] >= min(spans[0][1], spans[1][1]), spans
    result = subprocess.run([STEPFLOW, "result", summary["executionId"], "total", "-o", "json"], env=env,
                            cwd=work, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    value = json.loads(result.stdout)
    assert value["sum"] == 3 * (1 + 4 + 9) + 3 * (0 + 1 + 2)
    assert value["host"].startswith(by_step["total"]["metadata"]["name"][:20]), value  # it ran in the Job's pod
