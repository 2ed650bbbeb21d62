"""The floor under everything else: a trivial Job in the stepflow runner image runs to
Completed, and how long that takes (created → Completed) is recorded in the report."""

from __future__ import annotations

import json
import secrets
import time

from e2e.cluster import wait_for


def test_a_job_in_the_runner_image_completes(local_cluster):
    runner = local_cluster.images["runner"]["ref"]
    assert not runner.endswith(":latest")
    name = f"floor-{secrets.token_hex(3)}"
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name, "namespace": "default"},
           "spec": {"backoffLimit": 0, "ttlSecondsAfterFinished": 60, "template": {"spec": {
               "restartPolicy": "Never",
               "containers": [{"name": "step", "image": runner, "imagePullPolicy": "Never",
                               "command": ["python", "-c",
                                           "import stepflow, sys; print('stepflow', sys.version_info[:2])"]}]}}}}
    t0 = time.monotonic()
    local_cluster.kubectl("apply", "-f", "-", input=json.dumps(job))
    try:
        def complete() -> dict | None:
            found = json.loads(local_cluster.kubectl("-n", "default", "get", "job", name, "-o", "json").stdout)
            conditions = {c["type"]: c["status"] for c in (found.get("status") or {}).get("conditions") or ()}
            assert conditions.get("Failed") != "True", found["status"]
            return found if conditions.get("Complete") == "True" else None

        wait_for(complete, 120, f"Job {name} Complete", interval=0.1)
        elapsed = time.monotonic() - t0
        print(f"Job created -> Completed in {elapsed:.1f}s")
        logs = local_cluster.kubectl("-n", "default", "logs", f"job/{name}").stdout
        assert logs.startswith("stepflow (3, 11)"), logs
    finally:
        local_cluster.kubectl("-n", "default", "delete", "job", name, "--wait=false", check=False)
