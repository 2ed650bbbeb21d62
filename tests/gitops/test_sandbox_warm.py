"""The warm build worker (sandbox.forkserver): a build forked from it is confined exactly as a
cold one, compiles the same bundle, dies with the operator, and survives the worker's death.

Real processes, real signals, both confinement modes.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import signal
import site
import subprocess
import sys
from pathlib import Path

from tests.testenv import wait_for
from tests.testenv.samples import TWO_STEPS
from tests.testenv.wheels import make_wheel

from stepflow import confine
from stepflow.gitops.sandbox import NOBODY, BuildRequest, Sandbox, SandboxSettings
from stepflow.gitops.sandbox.warm import WarmWorker

ROOT = os.geteuid() == 0

#: A pipeline module that first reports, as user code, what it can see and who it is.
PROBE = """
import json, os, sys
from stepflow.compiler.runtime_wheel import runtime_wheel

def readable(path):
    try:
        with open(path, "rb") as f:
            f.read(1)
        return True
    except OSError:
        return False

with open("/tmp/{token}", "w") as f:
    f.write("left behind?")
report = {{
    "uid": os.getuid(), "gid": os.getgid(), "groups": os.getgroups(),
    "env": sorted(os.environ), "cwd": os.getcwd(), "path": sys.path,
    "operator_environ": readable("/proc/{operator}/environ"),
    "own_environ": readable("/proc/self/environ"),
    "sees_operator": os.path.exists("/proc/{operator}"),
    "fds": sorted(int(fd) for fd in os.listdir("/proc/self/fd")),
    "warm": runtime_wheel.cache_info().currsize == 1,
}}
print("REPORT " + json.dumps(report), flush=True)
"""


def _settings(root_dir: Path, python: str, mode: str, *, warm: bool) -> SandboxSettings:
    return SandboxSettings(work_dir=root_dir / "work", python=python,
                           site_dirs=tuple(site.getsitepackages()), confinement=mode, warm=warm)


def _write(folder: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        target = folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)


def _report(log_tail: str) -> dict:
    line = next(line for line in log_tail.splitlines() if line.startswith("REPORT "))
    return json.loads(line[len("REPORT "):])


def _worker_processes(starter: int) -> list[int]:
    """Live fork servers started by ``starter``, and every process forked from them."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
            with open(f"/proc/{entry}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    continue
        except OSError:
            continue
        if b"stepflow.gitops.sandbox.forkserver" in argv and str(starter).encode() in argv:
            found.append(int(entry))
    return found


def _with_token(token: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                if token.encode() in f.read():
                    found.append(int(entry))
        except OSError:
            continue
    return found


def test_a_warm_build_is_confined_like_a_cold_one_and_compiles_the_same_bundle(root_dir, checkout,
                                                                               build_python, mode):
    token = f"stepflow-warm-{secrets.token_hex(6)}"
    _write(checkout, {"pipelines/flow.py": PROBE.format(token=token, operator=os.getpid())
                      + TWO_STEPS.format(factor=3, name="probe")})
    results = {}
    try:
        for warm in (False, True):
            sandbox = Sandbox(_settings(root_dir, build_python, mode, warm=warm))
            try:
                result = asyncio.run(sandbox.build(BuildRequest(
                    checkout=checkout, module="pipelines/flow.py", s3_root_uri="s3://bucket/root",
                    source_date_epoch=1700000000)))
                assert result.ok, (result.reason, result.message, result.log_tail)
                assert result.bundle_dir is not None
                digest = json.loads((result.bundle_dir / "result.json").read_text())["digest"]
                results[warm] = (_report(result.log_tail), digest)
                if mode == confine.NAMESPACES:  # its /tmp was private, and is gone
                    assert not Path("/tmp", token).exists()
                Path("/tmp", token).unlink(missing_ok=True)
            finally:
                sandbox.close()
    finally:
        Path("/tmp", token).unlink(missing_ok=True)
    (cold, cold_digest), (warm_report, warm_digest) = results[False], results[True]
    assert not cold.pop("warm") and warm_report.pop("warm")  # it did fork from the worker
    assert warm_report == cold  # the same user, environment, view of /proc and descriptors
    assert warm_digest == cold_digest
    assert cold["cwd"] == str(checkout.resolve())
    assert cold["own_environ"] and not cold["operator_environ"]
    if ROOT:
        assert (cold["uid"], cold["gid"], cold["groups"]) == (NOBODY, NOBODY, [])
    assert cold["sees_operator"] is (mode != confine.NAMESPACES)


#: The "operator": one warm build of a module that daemonizes and then waits.
OPERATOR = """
import asyncio, site, sys
from pathlib import Path
from stepflow.gitops.sandbox import BuildRequest, Sandbox, SandboxSettings
work, python, mode, checkout = sys.argv[1:]
settings = SandboxSettings(work_dir=Path(work), python=python,
                           site_dirs=tuple(site.getsitepackages()), confinement=mode)
asyncio.run(Sandbox(settings).build(BuildRequest(checkout=Path(checkout), module="daemon.py",
                                                 s3_root_uri="s3://bucket/root")))
"""

#: User code that leaves a daemon (double fork + setsid) and a child, then waits.
DAEMONIZING = """
import os, subprocess, sys, time
sleeper = [sys.executable, "-c", "import time; time.sleep(600)", "{token}"]
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.execv(sys.executable, sleeper)
    os._exit(0)
subprocess.Popen(sleeper)
time.sleep(600)
"""


def test_killing_the_operator_kills_the_worker_and_every_process_of_its_builds(root_dir, checkout,
                                                                              build_python, mode):
    token = f"stepflow-warm-{secrets.token_hex(6)}"
    _write(checkout, {"daemon.py": DAEMONIZING.format(token=token)})
    operator = subprocess.Popen([sys.executable, "-c", OPERATOR, str(root_dir / "work"), build_python, mode,
                                 str(checkout)], stdin=subprocess.DEVNULL)
    try:
        wait_for(lambda: len(_with_token(token)) >= 2, timeout=120, message="the build's daemons did not start")
        workers = _worker_processes(operator.pid)
        assert workers, "the build did not run in the warm worker"
        os.kill(operator.pid, signal.SIGKILL)
        operator.wait()
        wait_for(lambda: not _with_token(token) and not _worker_processes(operator.pid), timeout=10,
                 interval=0.005, message="the worker or a process of its build outlived the operator")
    finally:
        operator.kill()
        operator.wait()
        for pid in _with_token(token) + _worker_processes(operator.pid):
            os.kill(pid, signal.SIGKILL)


#: Waits on its first run (until the test kills the worker), compiles on the second.
FIRST_RUN_WAITS = """
import os, time
marker = os.path.join(os.path.dirname(os.path.abspath(__file__)), "started")
if not os.path.exists(marker):
    open(marker, "w").close()
    time.sleep(600)
"""


def test_a_worker_that_dies_mid_build_is_logged_the_build_runs_cold_and_the_next_build_restarts_it(
        root_dir, checkout, build_python, caplog):
    _write(checkout, {"pipelines/flow.py": FIRST_RUN_WAITS + TWO_STEPS.format(factor=1, name="again")})
    sandbox = Sandbox(_settings(root_dir, build_python, confine.REAPER, warm=True))
    request = BuildRequest(checkout=checkout, module="pipelines/flow.py", s3_root_uri="s3://bucket/root")
    before = set(_worker_processes(os.getpid()))  # other tests' sandboxes, still open

    async def scenario() -> tuple[object, int, object, int]:
        build = asyncio.create_task(sandbox.build(request))
        await asyncio.to_thread(wait_for, lambda: (checkout / "pipelines" / "started").exists(), 120, 0.01,
                                "the first build did not start")
        first = sandbox.worker.pid if sandbox.worker else None
        assert first is not None
        os.kill(first, signal.SIGKILL)
        result = await build
        again = await sandbox.build(request)
        second = sandbox.worker.pid if sandbox.worker else None
        return result, first, again, second

    try:
        with caplog.at_level(logging.INFO, logger="stepflow.gitops.sandbox"):
            result, first, again, second = asyncio.run(scenario())
    finally:
        sandbox.close()
    assert result.ok, (result.reason, result.message, result.log_tail)  # run again, cold
    assert again.ok, (again.reason, again.message, again.log_tail)
    assert second is not None and second != first
    messages = [r.getMessage() for r in caplog.records]
    assert any(f"warm build worker (pid {first}) died: it was killed by SIGKILL" in m for m in messages), messages
    assert any("ran again in a fresh interpreter" in m for m in messages), messages
    assert set(_worker_processes(os.getpid())) - before == set()  # closed: nothing of its own left running


def test_builds_with_requirements_never_run_in_the_worker(root_dir, checkout, build_python):
    # Their venv was written by pip as the sandbox user: its interpreter must never run as
    # the operator's user, which the worker does.
    (checkout / "dist").mkdir()
    make_wheel(checkout / "dist", "tinydep", "VALUE = 42\n")
    _write(checkout, {"requirements.txt": "./dist/tinydep-1.0-py3-none-any.whl\n",
                      "pipelines/flow.py": PROBE.format(token=f"stepflow-warm-{secrets.token_hex(6)}", operator=1)
                      + TWO_STEPS.format(factor=1, name="reqs")})
    sandbox = Sandbox(_settings(root_dir, build_python, confine.REAPER, warm=True))
    try:
        result = asyncio.run(sandbox.build(BuildRequest(checkout=checkout, module="pipelines/flow.py",
                                                        s3_root_uri="s3://bucket/root")))
    finally:
        sandbox.close()
    assert result.ok, (result.reason, result.message, result.log_tail)
    assert _report(result.log_tail)["warm"] is False
    assert sandbox.worker is None


def test_a_worker_that_cannot_start_is_logged_and_builds_run_cold(root_dir, checkout, build_python, caplog,
                                                                  monkeypatch):
    _write(checkout, {"pipelines/flow.py": PROBE.format(token=f"stepflow-warm-{secrets.token_hex(6)}", operator=1)
                      + TWO_STEPS.format(factor=1, name="cold")})
    monkeypatch.setattr(WarmWorker, "MODULE", "stepflow.gitops.sandbox.no_such_module")
    sandbox = Sandbox(_settings(root_dir, build_python, confine.REAPER, warm=True))
    try:
        with caplog.at_level(logging.WARNING, logger="stepflow.gitops.sandbox"):
            result = asyncio.run(sandbox.build(BuildRequest(checkout=checkout, module="pipelines/flow.py",
                                                            s3_root_uri="s3://bucket/root")))
    finally:
        sandbox.close()
    assert result.ok, (result.reason, result.message, result.log_tail)
    assert _report(result.log_tail)["warm"] is False
    assert any("the warm build worker could not start (it exited with code 1)" in r.getMessage()
               for r in caplog.records), [r.getMessage() for r in caplog.records]
