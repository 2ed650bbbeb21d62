"""The local backend's processes and the integrity key: on a pipe, never in an environment.

A real pipeline runs through ``LocalBackend`` with the key configured the old way (the
``STEPFLOW_INTEGRITY_KEY`` variable in the backend's environment). While its step runs,
the test reads, as root, the environment block of every process the backend started (the
detached orchestrator, the fork server, the attempt's runtime, the step's own code); and
the step itself reads its own and its parent's.
"""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

from tests.testenv import wait_for

from stepflow.backends.local import LocalBackend
from stepflow.compiler.loader import load_pipeline
from stepflow.session import Session
from stepflow.storage import open_store

KEY_HEX = "a7" * 32

PIPELINE = """
from stepflow.workflow.function_step import step
from stepflow.workflow.pipeline import Pipeline

@step(environment_variables={{"MODE": "fast"}})
def probe():
    import json, os, time
    def environ_of(pid):
        try:
            with open(f"/proc/{{pid}}/environ", "rb") as f:
                return "key inside" if {key!r}.encode() in f.read() else "no key"
        except OSError as exc:
            return type(exc).__name__
    report = {{"self": environ_of("self"), "parent": environ_of(os.getppid()),
              "mode": os.environ.get("MODE"), "uid": os.getuid()}}
    with open({started!r}, "w") as f:
        json.dump(report, f)
    deadline = time.time() + 60
    while not os.path.exists({go!r}) and time.time() < deadline:
        time.sleep(0.02)
    return report

pipeline = Pipeline(name="keyless", steps=[probe()])
"""


def _environ_blocks() -> dict[int, tuple[bytes, bytes]]:
    """pid -> (command line, environment block) of every process stepflow started."""
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            if b"stepflow" not in cmdline:
                continue
            out[int(entry)] = (cmdline, Path(f"/proc/{entry}/environ").read_bytes())
        except OSError:
            continue
    return out


def test_no_process_of_an_execution_has_the_key_in_its_environment(tmp_path, traversable_dir,
                                                                   step_env):
    traversable_dir.chmod(0o777)  # the step's user writes its report and reads "go"
    started, go = traversable_dir / "started", traversable_dir / "go"
    path = tmp_path / "keyless_pipeline.py"
    path.write_text(textwrap.dedent(PIPELINE.format(key=KEY_HEX, started=str(started), go=str(go))))
    root = f"file://{tmp_path / 'store'}"
    env = {**os.environ, "STEPFLOW_INTEGRITY_KEY": KEY_HEX}
    backend = LocalBackend(open_store(root), run_dir=tmp_path / "runs", env=env)
    pipeline = load_pipeline(str(path))
    pipeline._session = Session(root, backend=backend, integrity_key=bytes.fromhex(KEY_HEX))
    pipeline.upsert()
    execution = pipeline.start()  # a detached orchestrator, its fork server, the attempt
    try:
        wait_for(started.exists, timeout=60, message="the step never started")
        blocks = _environ_blocks()
        kinds = {b"stepflow.backends.local\x00": "orchestrator", b"--serve": "fork server",
                 b"stepflow.runtime.user_code": "user code"}
        seen = {name for cmdline, _ in blocks.values() for marker, name in kinds.items()
                if marker in cmdline}
        assert {"orchestrator", "fork server", "user code"} <= seen, blocks.keys()
        leaking = [cmdline.replace(b"\0", b" ")[:120] for cmdline, environ in blocks.values()
                   if KEY_HEX.encode() in environ]
        assert leaking == []
        report = json.loads(started.read_text())
        assert report["self"] == "no key"
        assert report["parent"] in ("no key", "PermissionError", "FileNotFoundError")
        assert report["mode"] == "fast"  # the step's declared environment reaches its code
    finally:
        go.touch()
    described = execution.wait(timeout=120)
    assert described["PipelineExecutionStatus"] == "Succeeded", described
    assert execution.result("probe")["self"] == "no key"  # signed and verified with the key
