"""Two operator processes, one Lease: one active, the other takes over when it is killed."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

from tests.operator.world import World, slow_pipeline, step_phase
from tests.testenv import free_port

LEASE = "stepflow-test"


def _readyz(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def _holder(world: World) -> str | None:
    proc = world.kubectl("get", "lease", LEASE, "-o", "json", check=False)
    if proc.returncode != 0:
        return None
    return (json.loads(proc.stdout).get("spec") or {}).get("holderIdentity")


def test_the_standby_takes_over_a_killed_leader_and_no_step_runs_twice(world: World, git_remote, traversable_dir):
    marks, name = slow_pipeline(world, git_remote, "handover", traversable_dir)
    election = ("--leader-elect", f"--leader-election-namespace={world.namespace}", f"--leader-election-id={LEASE}",
                "--lease-duration=4", "--renew-deadline=3", "--retry-period=0.5")
    ports = [free_port(), free_port()]
    first = world.operator(*election, STEPFLOW_METRICS_ADDRESS=f"127.0.0.1:{ports[0]}",
                           STEPFLOW_RECEIVER_ADDRESS="off")
    world.wait(lambda: (_holder(world) or "").endswith(f"_{first.proc.pid}"), 60, "the first operator leading")
    second = world.operator(*election, STEPFLOW_METRICS_ADDRESS=f"127.0.0.1:{ports[1]}",
                            STEPFLOW_RECEIVER_ADDRESS="off")
    world.wait(lambda: "standing by" in second.text(), 60, "the second operator standing by")

    execution = world.wait(lambda: [e["metadata"]["name"] for e in world.items("pipelineexecutions")], 60,
                           "the execution")[0]
    world.wait(lambda: step_phase(world, execution, "slow") == "Executing", 60, "step slow running")
    assert _readyz(ports[0]) == 200 and _readyz(ports[1]) == 503
    assert "stepflow operator: work dir" not in second.text()  # the standby runs no handler

    first.kill()
    killed = time.monotonic()
    world.wait(lambda: (_holder(world) or "").endswith(f"_{second.proc.pid}"), 30, "the standby taking the Lease")
    took_over = time.monotonic() - killed
    world.wait(lambda: f"resuming execution {execution}" in second.text(), 60, "the standby resuming the execution")
    resumed = time.monotonic() - killed
    print(f"FIGURE leader SIGKILL -> standby holds the Lease: {took_over:.2f}s; -> execution resumed: {resumed:.2f}s "
          "(lease 4s, renew deadline 3s, retry 0.5s)")
    assert _readyz(ports[1]) == 200

    (marks / "go").write_text("")
    done = world.wait_execution(execution, timeout=90)
    assert [(s["name"], s["phase"], s["attempts"]) for s in done["status"]["steps"]] == [
        ("first", "Succeeded", 1), ("slow", "Succeeded", 1), ("last", "Succeeded", 1)]
    for step in ("first", "slow", "last"):
        assert (marks / step).read_text() == "ran\n", f"step {step} ran more than once"


def test_a_clean_exit_hands_the_lease_over_at_once(world: World):
    election = ("--leader-elect", f"--leader-election-namespace={world.namespace}", f"--leader-election-id={LEASE}",
                "--lease-duration=30", "--renew-deadline=20", "--retry-period=0.5")
    first = world.operator(*election, STEPFLOW_METRICS_ADDRESS="off", STEPFLOW_RECEIVER_ADDRESS="off")
    world.wait(lambda: (_holder(world) or "").endswith(f"_{first.proc.pid}"), 60, "the first operator leading")
    world.wait(lambda: "Activity 'startup' succeeded" in first.text(), 60, "the first operator running kopf")
    second = world.operator(*election, STEPFLOW_METRICS_ADDRESS="off", STEPFLOW_RECEIVER_ADDRESS="off")
    world.wait(lambda: "standing by" in second.text(), 60, "the second operator standing by")
    first.stop()  # SIGTERM: kopf stops, the Lease is released
    # Well before the 30 s lease would expire by itself.
    world.wait(lambda: (_holder(world) or "").endswith(f"_{second.proc.pid}"), 15, "the standby taking the Lease")
