"""A @step attempt as a pod runs it (``stepflow.runtime.pod``): three real processes on one
shared folder and the real S3 server, no cluster. ``stage`` and ``collect`` get the integrity
key and the store's credentials, as the pod's runner-image containers do; ``user`` gets
neither, as the step's container does not. What a real pod adds (volumes, images, the
kubelet) is tested in e2e/realpods/test_kubernetes_backend.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from tests.testenv import wait_for

from stepflow import layout
from stepflow.runtime import handoff
from stepflow.serialization import deserialize, serialize
from stepflow.storage import NotFound, ObjectStore, open_store

TS = "2026-01-01-00-00-00-000"
EXEC = "exec-pod"
KEY = bytes.fromhex("7c" * 32)
PIPELINE = "demo"


@pytest.fixture
def pod(s3, tmp_path, traversable_dir, unprivileged_python):
    """(store, trusted env, step env, attempt folder): the pod's containers' environments."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("STEPFLOW_", "AWS_"))}
    base.update({"STEPFLOW_CACHE_DIR": str(traversable_dir / "cache"), "STEPFLOW_STEP_PYTHON": unprivileged_python,
                 "HOME": str(tmp_path / "home")})
    key_file = tmp_path / "key"
    key_file.write_text(KEY.hex())
    key_file.chmod(0o400)
    trusted = {**base, **s3.env(), "STEPFLOW_INTEGRITY_KEY_FILE": str(key_file)}
    os.environ.update(s3.env())  # for the test's own reads
    traversable_dir.chmod(0o777)
    return open_store(f"{s3.root_uri}/{PIPELINE}"), trusted, dict(base), traversable_dir / "attempt"


def _publish(store: ObjectStore, step: str, func) -> None:
    for name, obj in (("function", func), ("arguments", ((), {}))):
        artifact = serialize(obj, key=KEY)
        store.put_bytes(f"{step}/{TS}/{name}/payload.pkl", artifact.payload)
        store.put_bytes(f"{step}/{TS}/{name}/metadata.json", artifact.metadata)


def _phase(phase: str, attempt: Path, env: dict, store: ObjectStore, step: str, **kw) -> subprocess.Popen:
    args = [sys.executable, "-m", "stepflow.runtime.pod", phase, str(attempt)]
    if phase != "user":
        args += ["--s3_base_uri", store.uri(PIPELINE).removesuffix(f"/{PIPELINE}"), "--pipeline_step_name", step,
                 "--pipeline_execution_id", EXEC,
                 "--func_step_s3_dir", TS, "--client_python_version",
                 f"{sys.version_info.major}.{sys.version_info.minor}", "--attempt", "1"]
    return subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)


def _pod(pod, step: str) -> tuple[int, int, int, str]:
    """stage, then user and collect side by side (as the kubelet starts them); exit codes, log."""
    store, trusted, step_env, attempt = pod
    stage = _phase("stage", attempt, trusted, store, step)
    out = stage.communicate(timeout=120)[0]
    if stage.returncode != 0:
        return stage.returncode, -1, -1, out
    collect = _phase("collect", attempt, trusted, store, step)
    user = _phase("user", attempt, step_env, store, step)
    out += user.communicate(timeout=120)[0] + collect.communicate(timeout=120)[0]
    return stage.returncode, user.returncode, collect.returncode, out


def _record(store: ObjectStore, step: str) -> dict:
    return json.loads(store.get_bytes(layout.attempt_record_key(EXEC, step, 1)))


def _read(store: ObjectStore, prefix: str):
    return deserialize(store.get_bytes(layout.payload_key(prefix)), store.get_bytes(layout.metadata_key(prefix)),
                       key=KEY)


def test_a_step_runs_without_the_key_and_its_result_is_signed(pod):
    store = pod[0]

    def probe():
        import os

        return sorted(k for k in os.environ if k.startswith(("AWS_", "STEPFLOW_INTEGRITY")))

    _publish(store, "probe", probe)
    stage, user, collect, out = _pod(pod, "probe")
    assert (stage, user, collect) == (0, 0, 0), out
    assert _read(store, layout.results_prefix(EXEC, "probe")) == []  # signed with the key, verified with it
    record = _record(store, "probe")
    assert record["status"] == "Succeeded" and record["failureReason"] is None


def test_a_user_exception_is_recorded_and_stored_signed(pod):
    store = pod[0]

    def boom():
        raise ValueError("boom in a pod")

    _publish(store, "boom", boom)
    stage, user, collect, out = _pod(pod, "boom")
    assert (stage, user, collect) == (0, 1, 1), out
    assert _record(store, "boom")["failureReason"] == "ValueError: boom in a pod"
    assert _record(store, "boom")["failureKind"] == "User"
    assert isinstance(_read(store, layout.exception_prefix(EXEC, "boom")), ValueError)
    assert "stepflow: step boom attempt 1 failed: ValueError: boom in a pod" in out


def test_a_tampered_artifact_is_refused_at_stage_and_the_step_never_runs(pod, traversable_dir):
    store = pod[0]
    marker = traversable_dir / "ran"
    _publish(store, "t", lambda: open(marker, "w").write("genuine"))
    store.put_bytes(f"t/{TS}/function/payload.pkl", serialize(lambda: open(marker, "w").write("evil")).payload)
    stage, user, collect, out = _pod(pod, "t")
    assert stage == 2 and (user, collect) == (-1, -1), out
    record = _record(store, "t")
    assert record["failureReason"].startswith("IntegrityCheckFailed: ") and record["failureKind"] == "User", record
    assert not marker.exists() and not (pod[3] / handoff.INPUTS / handoff.FUNCTION).exists()


def test_a_user_part_that_exits_without_an_outcome_fails_with_its_code(pod):
    store = pod[0]

    def leave():
        import os

        os._exit(7)

    _publish(store, "leave", leave)
    stage, user, collect, out = _pod(pod, "leave")
    assert (stage, user, collect) == (0, 1, 1), out
    assert _record(store, "leave")["failureReason"] == ("the step's process exited with code 7 before it reported "
                                                          "an outcome (did the step call os._exit?)")
    with pytest.raises(NotFound):
        store.get_bytes(layout.payload_key(layout.results_prefix(EXEC, "leave")))


def test_a_step_container_killed_whole_leaves_the_record_to_the_orchestrator(pod):
    """The kernel's OOM killer with memory.oom.group, a deadline: nothing in the step's
    container survives to write the exit file; the collector sees its lock released."""
    store, trusted, step_env, attempt = pod

    def sleeper():
        import time

        time.sleep(600)

    _publish(store, "sleeper", sleeper)
    stage = _phase("stage", attempt, trusted, store, "sleeper")
    assert stage.wait(timeout=120) == 0, stage.communicate()[0]
    collect = _phase("collect", attempt, trusted, store, "sleeper")
    user = _phase("user", attempt, step_env, store, "sleeper", start_new_session=True)
    wait_for(lambda: (attempt / handoff.RUNNING).exists(), 60, message="the step container holding its lock")
    assert collect.poll() is None and user.poll() is None
    os.killpg(user.pid, signal.SIGKILL)
    user.wait(timeout=30)
    out = collect.communicate(timeout=60)[0]
    assert collect.returncode == 3, out
    assert "ended without reporting how" in out
    with pytest.raises(NotFound):
        _record(store, "sleeper")
