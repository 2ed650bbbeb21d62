"""The step runtime as a real process against a real store (file:// and the S3 server).

Artifacts are written with the serialization API directly, so these tests pin the
runtime's contract (arguments in, results/exception/attempt record out, exit codes)
independently of the compiler.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from tests.testenv.wheels import make_wheel

from stepflow import layout
from stepflow.serialization import deserialize, serialize
from stepflow.storage import open_store
from stepflow.workflow import placeholders as ph

PIPELINE = "demo"
TS = "2026-01-01-00-00-00-000"
EXEC = "exec-1"


@pytest.fixture(params=["file", "s3"])
def store_env(request, tmp_path, traversable_dir, unprivileged_python):
    """(base_uri, env) for a pipeline prefix in a file:// or S3 store."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STEPFLOW_")}
    env["STEPFLOW_CACHE_DIR"] = str(traversable_dir / "cache")
    env["STEPFLOW_STEP_PYTHON"] = unprivileged_python
    env["HOME"] = str(tmp_path / "home")
    if request.param == "file":
        return f"file://{tmp_path / 'store'}/{PIPELINE}", env
    s3 = request.getfixturevalue("s3")
    env.update(s3.env())
    os.environ.update(s3.env())  # for the test's own reads
    return f"{s3.root_uri}/{PIPELINE}", env


def put(base: str, step: str, func, args=(), kwargs=None, extra: dict[str, bytes] | None = None):
    store = open_store(base)
    for name, obj in (("function", func), ("arguments", (tuple(args), dict(kwargs or {})))):
        art = serialize(obj)
        store.put_bytes(f"{step}/{TS}/{name}/payload.pkl", art.payload)
        store.put_bytes(f"{step}/{TS}/{name}/metadata.json", art.metadata)
    for name, data in (extra or {}).items():
        store.put_bytes(f"{step}/{TS}/pre_exec_script_and_dependencies/{name}", data)
    return store


def run(base: str, env: dict, step: str, refs: dict[str, str] | None = None, json_out=False,
        deps: str | None = None, python: str | None = None) -> subprocess.CompletedProcess:
    args = [sys.executable, "-m", "stepflow.runtime", "--s3_base_uri", base,
            "--client_python_version", python or f"{sys.version_info.major}.{sys.version_info.minor}",
            "--dependency_settings", json.dumps({"dependency_file": deps}),
            "--pipeline_step_name", step, "--pipeline_execution_id", EXEC,
            "--func_step_s3_dir", TS, "--attempt", "1"]
    flat = ["Execution.PipelineExecutionId", EXEC]
    for k, v in (refs or {}).items():
        flat += [k, v]
    args += ["--property_references", *flat]
    if json_out:
        args += ["--serialize_output_to_json", "true"]
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)


def record(store, step):
    return json.loads(store.get_bytes(layout.attempt_record_key(EXEC, step, 1)))


def result(store, step):
    prefix = layout.results_prefix(EXEC, step)
    return deserialize(store.get_bytes(f"{prefix}/payload.pkl"), store.get_bytes(f"{prefix}/metadata.json"))


def test_success_writes_result_json_and_record(store_env):
    base, env = store_env
    store = put(base, "add", lambda a, b=0: {"sum": a + b, "items": (a, b)}, (2,), {"b": 3})
    proc = run(base, env, "add", json_out=True)
    assert proc.returncode == 0, proc.stderr
    assert result(store, "add") == {"sum": 5, "items": (2, 3)}
    doc = json.loads(store.get_bytes(f"{layout.results_prefix(EXEC, 'add')}/results.json"))
    assert doc == {"Result": {"sum": 5, "items": [2, 3]}, "Exception": None}
    rec = record(store, "add")
    assert rec["status"] == "Succeeded" and rec["exitCode"] == 0 and rec["failureReason"] is None


def test_placeholders_are_resolved_with_types_and_upstream_paths(store_env):
    base, env = store_env
    store = put(base, "up", lambda: [{"k": "v"}, 7])
    assert run(base, env, "up").returncode == 0
    up_uri = open_store(base).uri(layout.results_prefix(EXEC, "up"))

    def probe(n, f, flag, s, exec_id, first_k, second):
        return [n, f, flag, s, exec_id, first_k, second]

    dr = ph._DelayedReturn(ph._Properties("Steps.up.OutputDataConfig.S3OutputPath"),
                           (("__getitem__", 0), ("__getitem__", "k")))
    dr2 = ph._DelayedReturn(ph._Properties("Steps.up.OutputDataConfig.S3OutputPath"), (("__getitem__", 1),))
    put(base, "probe", probe, (ph._ParameterInteger("N"), ph._ParameterFloat("F"), ph._ParameterBoolean("B"),
                               ph._ParameterString("S"), ph._ExecutionVariable("PipelineExecutionId")),
        {"first_k": dr, "second": dr2})
    refs = {"Parameters.N": "4", "Parameters.F": "0.5", "Parameters.B": "True", "Parameters.S": "x",
            "Steps.up.OutputDataConfig.S3OutputPath": up_uri}
    proc = run(base, env, "probe", refs)
    assert proc.returncode == 0, proc.stderr
    assert result(store, "probe") == [4, 0.5, True, "x", EXEC, "v", 7]


def test_user_exception_fails_with_reason_and_traceback(store_env):
    base, env = store_env

    def boom():
        raise ValueError("boom at step")

    store = put(base, "bad", boom)
    proc = run(base, env, "bad")
    assert proc.returncode == 1
    rec = record(store, "bad")
    assert rec["failureReason"] == "ValueError: boom at step" and rec["failureKind"] == "User"
    prefix = layout.exception_prefix(EXEC, "bad")
    exc = deserialize(store.get_bytes(f"{prefix}/payload.pkl"), store.get_bytes(f"{prefix}/metadata.json"))
    assert isinstance(exc, ValueError) and exc.__traceback__ is not None
    assert "Traceback" in proc.stderr


def test_tampered_artifact_is_refused_before_unpickling(store_env, tmp_path):
    base, env = store_env
    marker = tmp_path / "ran"
    store = put(base, "t", lambda: open(marker, "w").write("x"))
    evil = serialize(lambda: open(marker, "w").write("evil")).payload
    store.put_bytes(f"t/{TS}/function/payload.pkl", evil)
    proc = run(base, env, "t")
    assert proc.returncode == 2
    assert "Integrity" in record(store, "t")["failureReason"]
    assert not marker.exists()


def test_result_not_json_serializable_succeeds_and_records_why_in_results_json(store_env):
    # SageMaker's behaviour: a downstream @step gets the pickled value; only JSON readers
    # (conditions, JsonGet) need JSON, and they read the recorded reason.
    base, env = store_env
    store = put(base, "obj", lambda: {"when": object()})
    proc = run(base, env, "obj", json_out=True)
    assert proc.returncode == 0, proc.stderr
    assert record(store, "obj")["status"] == "Succeeded"
    out = layout.results_prefix(EXEC, "obj")
    doc = json.loads(store.get_bytes(f"{out}/results.json"))
    assert doc["Result"] is None
    assert doc["Exception"].startswith("The function return ({'when': <object object")
    assert "is not JSON serializable" in doc["Exception"]
    value = deserialize(store.get_bytes(f"{out}/payload.pkl"), store.get_bytes(f"{out}/metadata.json"))
    assert type(value["when"]) is object


def test_unpicklable_result_fails_clearly(store_env):
    base, env = store_env
    store = put(base, "lock", lambda: __import__("threading").Lock())
    proc = run(base, env, "lock")
    assert proc.returncode == 1
    reason = record(store, "lock")["failureReason"]
    assert reason.startswith("SerializationError") and "lock" in reason.lower()


def test_missing_dependency_names_the_module(store_env):
    base, env = store_env
    store = put(base, "imp", lambda: __import__("stepflow_no_such_module"))
    assert run(base, env, "imp").returncode == 1
    assert "stepflow_no_such_module" in record(store, "imp")["failureReason"]


def test_python_version_mismatch_is_an_environment_error(store_env):
    base, env = store_env
    store = put(base, "py", lambda: 1)
    proc = run(base, env, "py", python="2.7")
    assert proc.returncode == 2
    assert "does not match Python '2.7'" in record(store, "py")["failureReason"]


def test_failing_dependency_install_is_an_environment_error(store_env):
    base, env = store_env
    store = put(base, "deps", lambda: 1, extra={"requirements.txt": b"this is not a requirement !!\n"})
    proc = run(base, env, "deps", deps="requirements.txt")
    assert proc.returncode == 2
    assert "install the step's dependencies" in record(store, "deps")["failureReason"]


def test_pre_exec_script_runs_in_the_workspace_and_failure_stops_the_step(store_env):
    base, env = store_env
    store = put(base, "pre", lambda: open("made-by-pre-exec").read(),
                extra={"pre_exec.sh": b"echo hello > made-by-pre-exec\n"})
    assert run(base, env, "pre").returncode == 0
    assert result(store, "pre") == "hello\n"
    store = put(base, "pre2", lambda: 1, extra={"pre_exec.sh": b"exit 4\n"})
    assert run(base, env, "pre2").returncode == 2
    assert "pre-execution" in record(store, "pre2")["failureReason"]


def test_declared_dependencies_install_into_an_isolated_cached_env(store_env, traversable_dir, tmp_path):
    """A local package installed for the step is importable there and not in the runtime's env."""
    base, env = store_env
    # Shipped in the step's dependency channel: user code sees no host /tmp (namespaces).
    wheel = make_wheel(tmp_path, "stepflow_demo_dep", "VALUE = 42\n")
    req = f"--no-index\n./{wheel.name}\n".encode()
    store = put(base, "dep", lambda: __import__("stepflow_demo_dep").VALUE,
                extra={"requirements.txt": req, wheel.name: wheel.read_bytes()})
    proc = run(base, env, "dep", deps="requirements.txt")
    assert proc.returncode == 0, proc.stderr
    assert result(store, "dep") == 42
    assert subprocess.run([sys.executable, "-c", "import stepflow_demo_dep"]).returncode != 0
    envs = list((traversable_dir / "cache").glob("*envs*/*/.ready"))
    assert len(envs) == 1


def test_user_code_does_not_see_the_integrity_key_even_after_a_dependency_reexec(store_env, tmp_path):
    base, env = store_env
    key = "cd" * 32
    env = {**env, "STEPFLOW_INTEGRITY_KEY": key}
    store = open_store(base)
    wheel = make_wheel(tmp_path, "stepflow_key_dep", "VALUE = 1\n")
    def probe():
        return [__import__("stepflow_key_dep").VALUE, __import__("os").environ.get("STEPFLOW_INTEGRITY_KEY")]
    for name, obj in (("function", probe), ("arguments", ((), {}))):
        art = serialize(obj, key=bytes.fromhex(key))
        store.put_bytes(f"k/{TS}/{name}/payload.pkl", art.payload)
        store.put_bytes(f"k/{TS}/{name}/metadata.json", art.metadata)
    channel = f"k/{TS}/pre_exec_script_and_dependencies"
    store.put_bytes(f"{channel}/requirements.txt", f"--no-index\n./{wheel.name}\n".encode())
    store.put_bytes(f"{channel}/{wheel.name}", wheel.read_bytes())
    proc = run(base, env, "k", deps="requirements.txt")
    assert proc.returncode == 0, proc.stderr
    prefix = layout.results_prefix(EXEC, "k")
    value = deserialize(store.get_bytes(f"{prefix}/payload.pkl"), store.get_bytes(f"{prefix}/metadata.json"),
                        key=bytes.fromhex(key))
    assert value == [1, None]
