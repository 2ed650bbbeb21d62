"""What a step's own code can reach, probed from inside a real step (docs/ISOLATION.md).

The runtime runs as a real process, as the test user (root here, as the operator in its
image), with the integrity key on a pipe or in a 0400 file; the step's function tries to
read the operator's secrets and environment and to write into the operator's folders, and
returns what happened. Run as root, the step's code runs as uid 65534.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from tests.testenv import unavailable

import stepflow
from stepflow import confine, layout
from stepflow.runtime.key import key_pipe
from stepflow.serialization import deserialize, serialize
from stepflow.storage import open_store

ROOT = os.geteuid() == 0
TS = "2026-01-01-00-00-00-000"
EXEC = "exec-iso"
KEY = bytes.fromhex("5e" * 32)
needs_root = pytest.mark.skipif(not ROOT, reason="running steps as another user needs root")


def make_probe():
    """The step (nested, so cloudpickle ships it by value)."""

    def probe(paths_to_read, folders_to_write, key_hex):
        """The step: every read and write it was asked to try, and what it saw of itself."""
        import os

        def attempt(action):
            try:
                action()
                return "allowed"
            except OSError as exc:
                return type(exc).__name__

        def read(path):
            with open(path, "rb") as f:
                return f.read()

        def write(folder):
            with open(os.path.join(folder, "planted-by-a-step"), "w") as f:
                f.write("x")

        def environ_of(pid):
            try:
                return "key inside" if key_hex.encode() in read(f"/proc/{pid}/environ") else "no key"
            except OSError as exc:
                return type(exc).__name__

        return {
            "uid": os.getuid(), "groups": os.getgroups(), "env": dict(os.environ),
            "reads": {p: attempt(lambda p=p: read(p)) for p in paths_to_read},
            "writes": {f: attempt(lambda f=f: write(f)) for f in folders_to_write},
            "self environ": environ_of("self"), "parent environ": environ_of(os.getppid()),
        }

    return probe


@pytest.fixture
def operator_files(traversable_dir: Path) -> dict[str, Path]:
    """Files and folders laid out as the operator has them (the chart mounts secrets 0400)."""
    out = {}
    for name, mode in (("kubeconfig", 0o600), ("serviceaccount/token", 0o400),
                       ("integrity/key", 0o400)):
        path = traversable_dir / name
        path.parent.mkdir(exist_ok=True)
        path.parent.chmod(0o755)
        path.write_text(KEY.hex() if name == "integrity/key" else f"secret {name}")
        path.chmod(mode)
        out[name] = path
    for name in ("work", "git-cache", "venvs"):
        path = traversable_dir / name
        path.mkdir(mode=0o755)
        out[name] = path
    return out


def _publish(base: str, step: str, func, args=(), kwargs=None, key: bytes | None = KEY) -> None:
    store = open_store(base)
    for name, obj in (("function", func), ("arguments", (tuple(args), dict(kwargs or {})))):
        artifact = serialize(obj, key=key)
        store.put_bytes(f"{step}/{TS}/{name}/payload.pkl", artifact.payload)
        store.put_bytes(f"{step}/{TS}/{name}/metadata.json", artifact.metadata)


def _run(base: str, env: dict[str, str], step: str, *, key_on_pipe: bytes | None = None
         ) -> subprocess.CompletedProcess[str]:
    fd, key_env = key_pipe(key_on_pipe)
    try:
        return subprocess.run(
            [sys.executable, "-m", "stepflow.runtime", "--s3_base_uri", base,
             "--pipeline_step_name", step, "--pipeline_execution_id", EXEC,
             "--func_step_s3_dir", TS, "--attempt", "1"],
            env={**env, **key_env}, pass_fds=() if fd is None else (fd,),
            capture_output=True, text=True, timeout=120)
    finally:
        if fd is not None:
            os.close(fd)


def _result(base: str, step: str, key: bytes | None = KEY):
    store = open_store(base)
    prefix = layout.results_prefix(EXEC, step)
    return deserialize(store.get_bytes(layout.payload_key(prefix)),
                       store.get_bytes(layout.metadata_key(prefix)), key=key)


@pytest.fixture
def runtime_env(tmp_path: Path, traversable_dir: Path, unprivileged_python: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STEPFLOW_")}
    env.update({"STEPFLOW_CACHE_DIR": str(traversable_dir / "cache"),
                "STEPFLOW_STEP_PYTHON": unprivileged_python,
                "AWS_SECRET_ACCESS_KEY": "operator-aws-secret", "KUBECONFIG": "/somewhere",
                "STEPFLOW_STEP_ENVIRONMENT": json.dumps({"MODE": "fast"})})
    return env


@pytest.mark.parametrize("key_channel", ["pipe", "file"])
@pytest.mark.parametrize("confinement", [confine.NAMESPACES, confine.REAPER])
def test_a_step_cannot_read_the_operators_secrets_nor_write_its_files(
        tmp_path, operator_files, runtime_env, key_channel, confinement):
    problem = confine.probe(sys.executable) if confinement == confine.NAMESPACES else None
    if problem:
        unavailable(f"pid and mount namespaces are not available here: {problem}")
    base = f"file://{tmp_path / 'store'}/demo"
    store_file = tmp_path / "store" / "demo" / "s" / TS / "function" / "payload.pkl"
    reads = [str(operator_files[n]) for n in ("kubeconfig", "serviceaccount/token", "integrity/key")]
    reads += [f"/proc/{os.getpid()}/environ", str(store_file)]
    writes = [str(operator_files[n]) for n in ("work", "git-cache", "venvs")]
    writes.append(os.path.dirname(stepflow.__file__))
    _publish(base, "s", make_probe(), (reads, writes, KEY.hex()))
    env = {**runtime_env, "STEPFLOW_STEP_CONFINEMENT": confinement}
    if key_channel == "file":
        env["STEPFLOW_INTEGRITY_KEY_FILE"] = str(operator_files["integrity/key"])
    proc = _run(base, env, "s", key_on_pipe=KEY if key_channel == "pipe" else None)
    assert proc.returncode == 0, proc.stderr
    report = _result(base, "s")  # signed with the key by the trusted part, so it verifies

    # The key is in no environment block the step can read: its own, its parent's.
    assert report["self environ"] == "no key"
    assert report["parent environ"] in ("no key", "PermissionError", "FileNotFoundError")
    # Its environment is an allow-list plus what the step declared.
    assert report["env"]["MODE"] == "fast"
    assert not {"AWS_SECRET_ACCESS_KEY", "KUBECONFIG", "STEPFLOW_INTEGRITY_KEY",
                "STEPFLOW_INTEGRITY_KEY_FILE", "STEPFLOW_INTEGRITY_KEY_FD"} & set(report["env"])
    assert KEY.hex() not in json.dumps(report["env"])
    if ROOT:
        assert report["uid"] == 65534 and report["groups"] == []
        assert report["env"]["HOME"] != os.environ.get("HOME")
        denied = ("PermissionError", "FileNotFoundError")  # refused, or not even visible
        assert all(outcome in denied for outcome in report["reads"].values()), report["reads"]
        assert all(outcome in denied + ("OSError",) for outcome in report["writes"].values()), \
            report["writes"]
        for folder in writes:
            assert not Path(folder, "planted-by-a-step").exists()


def test_a_step_without_a_uid_switch_keeps_the_users_environment_but_not_the_key(
        tmp_path, runtime_env):
    """``STEPFLOW_STEP_UID=none`` (what a laptop user gets): same user, same environment."""
    base = f"file://{tmp_path / 'store'}/demo"
    _publish(base, "s", make_probe(), ([], [], KEY.hex()))
    proc = _run(base, {**runtime_env, "STEPFLOW_STEP_UID": "none"}, "s", key_on_pipe=KEY)
    assert proc.returncode == 0, proc.stderr
    report = _result(base, "s")
    assert report["uid"] == os.getuid()
    assert report["env"]["AWS_SECRET_ACCESS_KEY"] == "operator-aws-secret"
    assert report["env"]["MODE"] == "fast"
    assert report["self environ"] == "no key" and report["parent environ"] == "no key"
    assert not {"STEPFLOW_INTEGRITY_KEY", "STEPFLOW_INTEGRITY_KEY_FD"} & set(report["env"])


def test_a_tampered_artifact_fails_verification_with_the_key_from_the_pipe(
        tmp_path, traversable_dir, runtime_env):
    marker = traversable_dir / "ran"
    traversable_dir.chmod(0o777)
    base = f"file://{tmp_path / 'store'}/demo"
    _publish(base, "t", lambda: open(marker, "w").write("genuine"))
    evil = serialize(lambda: open(marker, "w").write("evil")).payload
    open_store(base).put_bytes(f"t/{TS}/function/payload.pkl", evil)
    proc = _run(base, runtime_env, "t", key_on_pipe=KEY)
    assert proc.returncode == 2, proc.stderr
    record = json.loads(open_store(base).get_bytes(layout.attempt_record_key(EXEC, "t", 1)))
    assert "Integrity" in record["failureReason"]
    assert not marker.exists()


def test_a_result_forged_with_a_symlink_is_not_read_by_the_trusted_part(
        tmp_path, operator_files, runtime_env):
    """The user part could plant ``outputs/result.pkl -> <key file>``; it must not be uploaded."""
    def forge(key_file):
        import os
        import sys
        outputs = os.path.join(os.getcwd(), "..", "..", "outputs")
        for name in ("result.pkl", "result.json", "outcome.json"):
            os.symlink(key_file, os.path.join(outputs, name))
        sys.stdout.flush()
        os._exit(0)

    base = f"file://{tmp_path / 'store'}/demo"
    _publish(base, "f", forge, (str(operator_files["integrity/key"]),))
    proc = _run(base, runtime_env, "f", key_on_pipe=KEY)
    assert proc.returncode == 1, proc.stderr
    store = open_store(base)
    assert store.head(layout.payload_key(layout.results_prefix(EXEC, "f"))) is None
    assert KEY.hex() not in proc.stderr


def test_a_cache_the_step_user_cannot_enter_falls_back_to_var_cache(tmp_path):
    """Root's default cache is under a 0700 /root (``make demo`` as root): the step user's
    venvs then go to /var/cache/stepflow instead of failing every step."""
    import os

    import pytest

    from stepflow.runtime.isolation import FALLBACK_CACHE, StepUser, envs_dir

    if os.geteuid() != 0:
        pytest.skip("switching users needs root")
    closed = tmp_path / "closed"
    closed.mkdir(mode=0o700)
    path = envs_dir(StepUser(65534, 65534), closed / "cache")
    assert path == FALLBACK_CACHE / "step-envs-65534"
    assert path.stat().st_uid == 65534 and (path.stat().st_mode & 0o777) == 0o700
