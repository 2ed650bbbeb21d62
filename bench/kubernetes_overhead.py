"""Per-step overhead of the kubernetes backend against the bare-Job floor, in the same run.

Needs the local single-node cluster (root; ``scripts/testenv install cluster``). It brings
the cluster up (or reuses a healthy one), starts versitygw on the bridge gateway as the
store, creates the step Secrets in a fresh namespace, then runs, each ``--repeat`` times
(best kept):

* ``floor``: bare Jobs in the runner image running ``python -c pass``, created through the
  API and watched to Completed: one after the other for the chain, all at once for the
  fan-out. What any Job-per-step system pays here (API round trips, scheduling, sandbox and
  container start, the Job controller noticing the end).
* ``kubernetes``: ``stepflow run flow.py --backend kubernetes`` from this machine (the
  orchestrator in the CLI process, a Job per step in the runner image): a chain of 10
  trivial ``@step`` functions, and a fan-out of 20 branches (plus a source and a join).
* ``local``: the same pipelines on the local backend (processes on this machine), same store.

Reported per shape: wall time, per step, and the ratio to the floor per step. The wall time
of ``stepflow run`` includes compile and publish (~1-2 s, once per run, not per step).

    sudo .venv/bin/python bench/kubernetes_overhead.py [--repeat 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
STEPFLOW = str(Path(sys.executable).parent / "stepflow")
CHAIN, FANOUT = 10, 20


def module(shape: str) -> str:
    head = "from stepflow import Pipeline, step\n\n"
    if shape == "chain":
        body = ["@step(name='s0')\ndef s0():\n    return 0\n"]
        body += [f"@step(name='s{i}')\ndef s{i}(x):\n    return x + 1\n" for i in range(1, CHAIN)]
        chain = "s0()"
        for i in range(1, CHAIN):
            chain = f"s{i}({chain})"
        return head + "\n".join(body) + f"\npipeline = Pipeline(name='kchain{CHAIN}', steps=[{chain}])\n"
    return head + textwrap.dedent(f"""
        @step(name="source")
        def source():
            return 1

        @step(name="join")
        def join(*parts):
            return sum(parts)

        src = source()
        branches = []
        for i in range({FANOUT}):
            @step(name=f"b{{i}}")
            def branch(x, i=i):
                return x + i
            branches.append(branch(src))
        pipeline = Pipeline(name='kfanout{FANOUT}', steps=[join(*branches)])
    """)


def steps_in(shape: str) -> int:
    return CHAIN if shape == "chain" else FANOUT + 2


def floor(api, namespace: str, image: str, shape: str) -> float:
    """Bare Jobs created → Completed, in the pipeline's shape: one after another for the chain;
    for the fan-out the source, then the 20 branches at once, then the join."""
    from kubernetes import client, watch

    batch = client.BatchV1Api(api)
    run = secrets.token_hex(3)

    def manifest(i: int) -> dict:
        return {"apiVersion": "batch/v1", "kind": "Job",
                "metadata": {"name": f"floor-{run}-{i}", "labels": {"bench": run}},
                "spec": {"backoffLimit": 0, "ttlSecondsAfterFinished": 60, "template": {
                    "metadata": {"labels": {"bench": run}},
                    "spec": {"restartPolicy": "Never", "automountServiceAccountToken": False,
                             "containers": [{"name": "step", "image": image, "imagePullPolicy": "Never",
                                             "command": ["python", "-c", "pass"],
                                             "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}}}]}}}}

    def wait_complete(names: set[str]) -> None:
        left = set(names)
        stream = watch.Watch()
        for event in stream.stream(batch.list_namespaced_job, namespace, label_selector=f"bench={run}",
                                   timeout_seconds=300):
            job = event["raw_object"]
            conditions = {c["type"] for c in (job.get("status") or {}).get("conditions") or ()
                          if c["status"] == "True"}
            if "Failed" in conditions:
                raise RuntimeError(f"floor Job {job['metadata']['name']} failed")
            if "Complete" in conditions:
                left.discard(job["metadata"]["name"])
            if not left:
                stream.stop()
                return
        raise RuntimeError(f"floor Jobs not Complete within 300 s: {sorted(left)}")

    t0 = time.monotonic()
    if shape == "chain":
        for i in range(CHAIN):
            batch.create_namespaced_job(namespace, manifest(i))
            wait_complete({f"floor-{run}-{i}"})
    else:  # the pipeline's shape: the source, then every branch at once, then the join
        batch.create_namespaced_job(namespace, manifest(0))
        wait_complete({f"floor-{run}-0"})
        for i in range(1, FANOUT + 1):
            batch.create_namespaced_job(namespace, manifest(i))
        wait_complete({f"floor-{run}-{i}" for i in range(1, FANOUT + 1)})
        batch.create_namespaced_job(namespace, manifest(FANOUT + 1))
        wait_complete({f"floor-{run}-{FANOUT + 1}"})
    elapsed = time.monotonic() - t0
    batch.delete_collection_namespaced_job(namespace, label_selector=f"bench={run}", propagation_policy="Background")
    return elapsed


def stepflow_run(work: Path, shape: str, backend: str, env: dict[str, str], namespace: str) -> float:
    flow = work / f"{shape}.py"
    flow.write_text(module(shape))
    argv = [STEPFLOW, "run", str(flow), "-o", "json", "--backend", backend]
    if backend == "kubernetes":
        argv += ["--namespace", namespace]
    t0 = time.monotonic()
    proc = subprocess.run(argv, env=env, cwd=work, capture_output=True, text=True, timeout=900)
    elapsed = time.monotonic() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"stepflow run {shape} on {backend} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    from tests.testenv.localcluster.session import start
    from tests.testenv.s3 import S3Server

    session = start()
    runner = session.images["runner"]["ref"]
    api = session.api_client
    work = Path(tempfile.mkdtemp(prefix="bench-k8s-"))
    s3 = S3Server(work / "s3", host=session.gateway).start()
    namespace = f"bench-{secrets.token_hex(3)}"
    try:
        bucket = s3.new_bucket("bench")
        key = secrets.token_hex(32)
        session.kubectl("create", "namespace", namespace)
        session.kubectl("-n", namespace, "create", "secret", "generic", "s3",
                        f"--from-literal=AWS_ACCESS_KEY_ID={s3.access_key}",
                        f"--from-literal=AWS_SECRET_ACCESS_KEY={s3.secret_key}")
        session.kubectl("-n", namespace, "create", "secret", "generic", "signing", f"--from-literal=key={key}")
        types = work / "types.yaml"
        types.write_text("ml.m5.large: {cpu: 50m, memory: 256Mi}\n")
        env = {**os.environ, **s3.env(), "KUBECONFIG": str(session.kubeconfig),
               "STEPFLOW_S3_ROOT_URI": f"s3://{bucket.bucket}/bench", "STEPFLOW_INTEGRITY_KEY": key,
               "STEPFLOW_RUNNER_IMAGE": runner, "STEPFLOW_RUNNER_PULL_POLICY": "Never",
               "STEPFLOW_STEP_S3_CREDENTIALS_SECRET": "s3", "STEPFLOW_STEP_INTEGRITY_KEY_SECRET": "signing",
               "STEPFLOW_INSTANCE_TYPES_FILE": str(types), "STEPFLOW_CACHE_DIR": str(work / "cache"),
               "AWS_REGION": s3.region}
        results: dict[str, dict[str, float]] = {}
        for shape in ("chain", "fanout"):
            row: dict[str, float] = {}
            for _ in range(args.repeat):
                for name in ("floor", "kubernetes", "local"):
                    if name == "floor":
                        took = floor(api, namespace, runner, shape)
                    else:
                        took = stepflow_run(work, shape, name, env, namespace)
                    row[name] = min(row.get(name, took), took)
                    print(f"{shape:6} {name:10} {took:6.1f}s", flush=True)
            results[shape] = row
        print()
        print(f"{'shape':8} {'steps':>5} {'floor':>8} {'k8s':>8} {'local':>8} {'k8s/step':>9} {'floor/step':>10} "
              f"{'ratio':>6}")
        for shape, row in results.items():
            n = steps_in(shape)
            print(f"{shape:8} {n:5d} {row['floor']:7.1f}s {row['kubernetes']:7.1f}s {row['local']:7.1f}s "
                  f"{row['kubernetes'] / n:8.2f}s {row['floor'] / n:9.2f}s {row['kubernetes'] / row['floor']:6.2f}")
        if args.json:
            args.json.write_text(json.dumps(results, indent=2))
    finally:
        session.kubectl("delete", "namespace", namespace, "--wait=false", check=False)
        s3.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
