"""The build sandbox with real processes: scrubbed env, other uid, limits, path checks, venvs."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import shutil
import signal
import site
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.testenv import unavailable
from tests.testenv.wheels import make_wheel

from stepflow.gitops.sandbox import (
    BUILD_CRASHED,
    BUILD_OUT_OF_MEMORY,
    BUILD_TIMEOUT,
    INVALID_MODULE_PATH,
    INVALID_REQUIREMENTS_PATH,
    NOBODY,
    REQUIREMENTS_FAILED,
    BuildRequest,
    Limits,
    ProcessResult,
    Sandbox,
    SandboxError,
    SandboxSettings,
    check_module_path,
)
from stepflow.gitops.sandbox.protocol import interpret

ROOT = os.geteuid() == 0
ALLOWED_ENV = {"PATH", "LANG", "HOME", "TMPDIR", "PYTHONHASHSEED", "PYTHONDONTWRITEBYTECODE"}
needs_root = pytest.mark.skipif(not ROOT, reason="switching users needs root")
needs_build_entrypoint = pytest.mark.skipif(
    importlib.util.find_spec("stepflow.compiler.build") is None,
    reason="python -m stepflow.compiler.build is not there yet (SDK issue)")


@pytest.fixture
def sandbox(root_dir: Path, build_python: str) -> Iterator[Sandbox]:
    sandbox = Sandbox(SandboxSettings(work_dir=root_dir / "work", python=build_python,
                                      site_dirs=tuple(site.getsitepackages()),
                                      output_limit=64 * 1024))
    yield sandbox
    sandbox.close()  # its warm build worker


def _write(folder: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        target = folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(textwrap.dedent(text))


async def _run_script(sandbox: Sandbox, checkout: Path, script: str, *args: str,
                      limits: Limits | None = None):
    limits = limits or Limits(timeout=60)
    _write(checkout, {"script.py": script})
    sandbox.jail.hand_over(checkout)
    python, failure = await sandbox.venvs.environment(None, cwd=checkout)
    assert failure is None
    return await sandbox.jail.run([python, "script.py", *args], cwd=checkout, limits=limits,
                             source_date_epoch=1700000000)


def test_environment_is_an_allow_list(sandbox, checkout, monkeypatch):
    secrets = {"AWS_ACCESS_KEY_ID": "AKIAEXAMPLE", "AWS_SECRET_ACCESS_KEY": "s3cr3t-aws-key",
               "KUBERNETES_SERVICE_HOST": "10.0.0.1", "STEPFLOW_INTEGRITY_KEY": "hmac-key-xyz",
               "OPERATOR_ONLY": "operator-private-value"}
    for key, value in secrets.items():
        monkeypatch.setenv(key, value)
    proc = asyncio.run(_run_script(sandbox, checkout, """
        import json, os
        print(json.dumps(dict(os.environ)))
    """))
    assert proc.returncode == 0, proc.output
    env = json.loads(proc.output.strip().splitlines()[-1])
    assert set(env) == ALLOWED_ENV | {"SOURCE_DATE_EPOCH"}
    assert env["SOURCE_DATE_EPOCH"] == "1700000000"
    assert env["PYTHONHASHSEED"] == "0"
    assert env["HOME"] != os.environ.get("HOME") and env["HOME"].startswith(str(sandbox.settings.work_dir))
    for value in secrets.values():
        assert value not in proc.output


@needs_root
def test_user_code_cannot_read_operator_secrets(sandbox, checkout, root_dir, monkeypatch):
    # As the chart mounts them: the token and secret files 0400, owned by the operator.
    token_dir = root_dir / "serviceaccount"
    token_dir.mkdir(mode=0o755)
    token = token_dir / "token"
    token.write_text("eyJhbGciOi-service-account-token")
    token.chmod(0o400)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s3cr3t-aws-key")
    proc = asyncio.run(_run_script(sandbox, checkout, """
        import json, os, sys
        report = {"uid": os.getuid(), "gid": os.getgid(), "groups": os.getgroups()}
        for path in sys.argv[1:]:
            try:
                with open(path, "rb") as f:
                    report[path] = f.read().decode(errors="replace")
            except OSError as exc:
                report[path] = type(exc).__name__
        print(json.dumps(report))
    """, str(token), f"/proc/{os.getpid()}/environ", f"/proc/{os.getpid()}/mem"))
    report = json.loads(proc.output.strip().splitlines()[-1])
    assert report["uid"] == NOBODY and report["gid"] == NOBODY and report["groups"] == []
    # Refused (another uid), or not even there (under a private /tmp: namespaces).
    assert report[str(token)] in ("PermissionError", "FileNotFoundError")
    # Hidden by a private /proc (namespaces), else refused (another uid).
    assert report[f"/proc/{os.getpid()}/environ"] in ("PermissionError", "FileNotFoundError")
    assert report[f"/proc/{os.getpid()}/mem"] in ("PermissionError", "FileNotFoundError")
    assert "service-account-token" not in proc.output and "s3cr3t" not in proc.output


def test_wall_clock_timeout_kills_every_process_of_the_run(sandbox, checkout):
    started = time.monotonic()
    proc = asyncio.run(_run_script(sandbox, checkout, """
        import subprocess, sys, time
        # The script's path in the child's command line marks it as ours.
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)", sys.argv[0]])
        print("child started", flush=True)
        while True:
            time.sleep(0.05)
    """, limits=Limits(timeout=1.5)))
    elapsed = time.monotonic() - started
    assert proc.timed_out and proc.signal == signal.SIGKILL
    assert "child started" in proc.output
    assert elapsed < 10
    assert not _processes_with(str(checkout / "script.py"))


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_cpu_limit_stops_a_busy_loop(sandbox, checkout):
    proc = asyncio.run(_run_script(sandbox, checkout, """
        while True:
            pass
    """, limits=Limits(timeout=60, cpu_seconds=1)))
    assert not proc.timed_out
    assert proc.signal in (signal.SIGXCPU, signal.SIGKILL)
    assert proc.duration < 15


def test_memory_limit_turns_unbounded_allocation_into_memory_error(sandbox, checkout):
    proc = asyncio.run(_run_script(sandbox, checkout, """
        hoard = []
        while True:
            hoard.append(bytearray(16 * 1024 * 1024))
    """, limits=Limits(timeout=60, memory_bytes=512 * 1024**2)))
    assert proc.returncode == 1
    assert "MemoryError" in proc.output
    assert proc.duration < 30


def test_output_is_bounded_but_counted(sandbox, checkout):
    proc = asyncio.run(_run_script(sandbox, checkout, """
        import sys
        for i in range(200_000):
            sys.stdout.write(f"line {i:06d} " + "x" * 40 + "\\n")
        print("THE END")
    """))
    assert proc.returncode == 0
    assert proc.output_bytes > 10_000_000
    assert len(proc.output.encode()) <= 64 * 1024 + 100
    assert proc.output.rstrip().endswith("THE END")
    assert "bytes cut" in proc.output.splitlines()[0]


def test_process_that_escapes_the_group_does_not_hang_the_run_nor_survive_it(sandbox, checkout):
    """A daemon that setsid()s and keeps stdout open must not keep the build waiting, and
    must not outlive it (the confinement kills it: stepflow.confine)."""
    started = time.monotonic()
    proc = asyncio.run(_run_script(sandbox, checkout, """
        import os, sys, time
        pid = os.fork()
        if pid == 0:
            os.setsid()
            time.sleep(30)
            os._exit(0)
        time.sleep(0.5)  # let the daemon leave the group before we exit
        print("daemon", pid, "parent exits", flush=True)
    """))
    assert proc.returncode == 0 and "parent exits" in proc.output
    assert time.monotonic() - started < 10
    assert not _processes_with(str(checkout / "script.py"))


def _processes_with(text: str) -> list[int]:
    """Live processes whose command line contains ``text``."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    if text.encode() in f.read() and _alive(int(entry)):
                        found.append(int(entry))
            except OSError:
                continue
    return found


@pytest.mark.parametrize("module", [
    "../../etc/passwd", "/etc/passwd", "pipelines/../../secret.py", "pipelines\\x.py",
    "pipe lines.churn", "", "a/../../b.py",
])
def test_module_paths_outside_the_checkout_are_refused(checkout, module):
    problem = check_module_path(checkout, module)
    assert problem is not None and "spec.module" in problem


def test_symlinks_escaping_the_checkout_are_refused(checkout, root_dir):
    outside = root_dir / "outside"
    outside.mkdir()
    (outside / "evil.py").write_text("pipeline = None\n")
    (checkout / "link.py").symlink_to(outside / "evil.py")
    (checkout / "pkg").symlink_to(outside)
    _write(checkout, {"pipelines/churn.py": "x = 1\n", "pipelines/__init__.py": ""})
    (checkout / "alias.py").symlink_to(checkout / "pipelines" / "churn.py")
    assert "symlink" in check_module_path(checkout, "link.py")
    assert "symlink" in check_module_path(checkout, "pkg/evil.py")
    assert "symlink" in check_module_path(checkout, "pkg.evil")
    for fine in ("pipelines/churn.py", "pipelines.churn", "alias.py", "not/yet/there.py"):
        assert check_module_path(checkout, fine) is None, fine


def test_build_refuses_traversal_before_running_anything(sandbox, checkout):
    result = asyncio.run(sandbox.build(BuildRequest(
        checkout=checkout, module="../../etc/passwd", s3_root_uri="file:///tmp/x")))
    assert not result.ok and result.reason == INVALID_MODULE_PATH and result.user_error
    assert "'../../etc/passwd'" in result.message and "relative to the repository" in result.message
    assert not any((sandbox.settings.work_dir / "venvs").iterdir())
    result = asyncio.run(sandbox.build(BuildRequest(
        checkout=checkout, module="p.py", requirements="../req.txt", s3_root_uri="file:///x")))
    assert result.reason == INVALID_REQUIREMENTS_PATH and result.user_error


def test_work_dir_the_sandbox_user_cannot_reach_is_a_clear_error(tmp_path, build_python):
    if not ROOT:
        pytest.skip("only checked when switching users")
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    with pytest.raises(SandboxError) as err:
        Sandbox(SandboxSettings(work_dir=private / "work", python=build_python))
    assert "chmod o+x" in str(err.value) and str(private) in str(err.value)


def test_requirements_venv_is_created_once_and_shared(sandbox, checkout):
    (checkout / "dist").mkdir()
    make_wheel(checkout / "dist", "tinydep", "VALUE = 42\n")
    _write(checkout, {"requirements.txt": "./dist/tinydep-1.0-py3-none-any.whl\n",
                      "script.py": """
        import os, sys, tinydep, stepflow
        print("value", tinydep.VALUE)
        target = os.path.join(os.path.dirname(tinydep.__file__), "pwned.py")
        try:
            open(target, "w").write("x")
            print("venv writable")
        except OSError:
            print("venv read-only")
    """})
    requirements = checkout / "requirements.txt"

    async def scenario():
        sandbox.jail.hand_over(checkout)
        results = await asyncio.gather(*[sandbox.venvs.environment(requirements, cwd=checkout)
                                          for _ in range(3)])
        again = await sandbox.venvs.environment(requirements, cwd=checkout)
        python = results[0][0]
        proc = await sandbox.jail.run([python, "script.py"], cwd=checkout, limits=Limits(timeout=60))
        return results, again, proc

    results, again, proc = asyncio.run(scenario())
    assert {r for r, _ in results} == {again[0]} and all(f is None for _, f in results + [again])
    venvs = [p for p in (sandbox.settings.work_dir / "venvs").iterdir() if p.is_dir()]
    assert len(venvs) == 1
    assert proc.returncode == 0, proc.output
    assert "value 42" in proc.output
    assert ("venv read-only" if ROOT else "venv writable") in proc.output
    marker = venvs[0] / ".complete"
    before = marker.stat().st_mtime_ns
    asyncio.run(sandbox.venvs.environment(requirements, cwd=checkout))
    assert marker.stat().st_mtime_ns == before  # reused, not rebuilt


def test_failing_requirements_name_the_file_and_the_problem(sandbox, checkout):
    _write(checkout, {"ci/reqs.txt": "./dist/missing-9.9-py3-none-any.whl\n", "p.py": "x=1\n"})
    result = asyncio.run(sandbox.build(BuildRequest(
        checkout=checkout, module="p.py", requirements="ci/reqs.txt",
        s3_root_uri="file:///tmp/x")))
    assert not result.ok and result.reason == REQUIREMENTS_FAILED and result.user_error
    assert "ci/reqs.txt" in result.message and "missing-9.9" in result.message
    assert not [p for p in (sandbox.settings.work_dir / "venvs").iterdir() if p.is_dir()]


# ---- through the real build entrypoint (python -m stepflow.compiler.build) -------------

GOOD_PIPELINE = """
from stepflow.workflow.function_step import step
from stepflow.workflow.pipeline import Pipeline

@step(name="hello")
def hello() -> int:
    return 1

pipeline = Pipeline(name="sandboxed", steps=[hello()])
"""


@needs_build_entrypoint
def test_build_compiles_a_module_into_a_bundle(sandbox, checkout, root_dir):
    _write(checkout, {"pipelines/hello.py": GOOD_PIPELINE})
    result = asyncio.run(sandbox.build(BuildRequest(
        checkout=checkout, module="pipelines/hello.py",
        s3_root_uri=f"file://{root_dir}/store", source_date_epoch=1700000000)))
    assert result.ok, (result.reason, result.message, result.log_tail)
    assert (result.bundle_dir / "definition.json").is_file()
    assert (result.bundle_dir / "bundle.json").is_file()
    assert result.bundle_dir.stat().st_uid == os.geteuid()
    assert not result.user_error


@needs_build_entrypoint
def test_a_syntax_error_in_the_module_is_the_users_error(sandbox, checkout):
    _write(checkout, {"broken.py": "def oops(:\n    pass\n"})
    result = asyncio.run(sandbox.build(BuildRequest(
        checkout=checkout, module="broken.py", s3_root_uri="file:///tmp/x")))
    assert not result.ok and result.user_error, (result.reason, result.message, result.log_tail)
    assert result.reason not in (BUILD_CRASHED, "InternalError")
    assert result.file and result.file.endswith("broken.py") and result.line == 1


@needs_build_entrypoint
def test_a_build_killed_by_a_signal_other_than_a_limits_is_not_the_users_error(sandbox, checkout):
    _write(checkout, {"segv.py": "import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)\n"})
    result = asyncio.run(sandbox.build(BuildRequest(
        checkout=checkout, module="segv.py", s3_root_uri="file:///tmp/x")))
    assert result.reason == BUILD_CRASHED and "SIGSEGV" in result.message
    assert not result.user_error


def test_a_build_that_cannot_start_is_not_the_users_error(sandbox, checkout, monkeypatch):
    _write(checkout, {"p.py": "x = 1\n"})
    asyncio.run(sandbox.venvs.environment(None, cwd=checkout))  # only the build fails to start

    async def no_processes_left(*args, **kwargs):
        raise BlockingIOError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(sandbox.jail, "run", no_processes_left)
    result = asyncio.run(sandbox.build(BuildRequest(
        checkout=checkout, module="p.py", s3_root_uri="file:///tmp/x")))
    assert not result.ok and result.reason == BUILD_CRASHED and not result.user_error
    assert "could not be started" in result.message
    assert not any((sandbox.settings.work_dir / "builds").iterdir())


def _ended(returncode: int, *, timed_out: bool = False, output: str = "") -> ProcessResult:
    return ProcessResult(returncode=returncode, timed_out=timed_out, output=output,
                         output_bytes=len(output), duration=1.0)


USER_FAILURE = {"ok": False, "reason": "InvalidName", "message": "bad name!", "file": "p.py",
                "line": 3}
INTERNAL_FAILURE = {"ok": False, "reason": "InternalError", "message": "KeyError: 'x'",
                    "file": None, "line": None}


@pytest.mark.parametrize("ended, payload, reason, user_error", [
    (_ended(2), USER_FAILURE, "InvalidName", True),
    (_ended(3), INTERNAL_FAILURE, "InternalError", False),
    (_ended(0), None, BUILD_CRASHED, False),  # exit 0 without result.json
    (_ended(2), None, BUILD_CRASHED, False),  # no result: not the entrypoint's own answer
    (_ended(-signal.SIGSEGV), None, BUILD_CRASHED, False),
    (_ended(-signal.SIGKILL, timed_out=True), None, BUILD_TIMEOUT, True),
    (_ended(-signal.SIGXCPU), None, BUILD_TIMEOUT, True),
    (_ended(1, output="MemoryError"), None, BUILD_OUT_OF_MEMORY, True),
    (_ended(3), {**INTERNAL_FAILURE, "message": "MemoryError: "}, BUILD_OUT_OF_MEMORY, True),
], ids=["exit-2", "exit-3", "exit-0-no-result", "exit-2-no-result", "sigsegv", "timeout",
        "cpu-limit", "memory-limit", "memory-limit-exit-3"])
def test_who_is_at_fault_follows_how_the_build_ended(tmp_path, ended, payload, reason,
                                                     user_error):
    if payload is not None:
        (tmp_path / "result.json").write_text(json.dumps(payload))
    result = interpret(ended, tmp_path, BuildRequest(checkout=tmp_path, module="p.py",
                                                     s3_root_uri="file:///tmp/x"))
    assert (result.ok, result.reason, result.user_error) == (False, reason, user_error)


@needs_build_entrypoint
def test_build_of_an_import_that_loops_forever_times_out(sandbox, checkout):
    _write(checkout, {"loop.py": "while True:\n    pass\n"})
    result = asyncio.run(sandbox.build(BuildRequest(
        checkout=checkout, module="loop.py", s3_root_uri="file:///tmp/x",
        limits=Limits(timeout=3))))
    assert result.reason == BUILD_TIMEOUT and "spec.build.timeout" in result.message
    assert result.user_error


@needs_build_entrypoint
def test_build_of_an_import_that_allocates_without_bound_runs_out_of_memory(sandbox, checkout):
    _write(checkout, {"hog.py": "h = []\nwhile True:\n    h.append(bytearray(1 << 24))\n"})
    result = asyncio.run(sandbox.build(BuildRequest(
        checkout=checkout, module="hog.py", s3_root_uri="file:///tmp/x",
        limits=Limits(timeout=60, memory_bytes=768 * 1024**2))))
    assert result.reason == BUILD_OUT_OF_MEMORY and "spec.build.memoryLimit" in result.message
    assert result.user_error


@needs_build_entrypoint
def test_build_that_plants_a_symlink_in_the_bundle_is_refused(sandbox, checkout, root_dir):
    secret = root_dir / "secret"
    secret.write_text("do-not-publish")
    _write(checkout, {"sneaky.py": GOOD_PIPELINE + f"""
import os, sys
out = sys.argv[sys.argv.index("--out") + 1]
os.makedirs(os.path.join(out, "files"), exist_ok=True)
os.symlink({str(secret)!r}, os.path.join(out, "files", "loot"))
"""})
    result = asyncio.run(sandbox.build(BuildRequest(
        checkout=checkout, module="sneaky.py", s3_root_uri=f"file://{root_dir}/store")))
    assert not result.ok and result.reason == "InvalidBundle", (result.reason, result.message)
    assert result.user_error
    assert "loot" in result.message


CHART_CAPABILITIES = "+chown,+dac_override,+kill,+setuid,+setgid"  # as charts/stepflow sets

_OPERATOR_SIDE = """
import asyncio, json, shutil, site, sys
from pathlib import Path
from stepflow.gitops.source import GitSource, Ref
from stepflow.gitops.sandbox import BuildRequest, Sandbox, SandboxSettings
url, root, python = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
source = GitSource(root / "cache")
commit = source.resolve(url, Ref(branch="main"))
checkout = source.fetch(url, Ref(branch="main"), commit)
sandbox = Sandbox(SandboxSettings(work_dir=root / "sandbox", python=python,
                                  site_dirs=tuple(site.getsitepackages())))
result = asyncio.run(sandbox.build(BuildRequest(
    checkout=checkout.path, module="pipelines/hello.py", s3_root_uri="file:///tmp/unused",
    source_date_epoch=checkout.committed_at)))
files = sorted(str(p.relative_to(result.bundle_dir)) for p in result.bundle_dir.rglob("*")
               if p.is_file()) if result.ok else []
checkout.cleanup()
if result.ok:
    shutil.rmtree(result.bundle_dir)
print(json.dumps({"ok": result.ok, "reason": result.reason, "message": result.message,
                  "files": files, "checkout_left": checkout.path.exists(),
                  "bundle_left": bool(result.bundle_dir and result.bundle_dir.exists())}))
"""


@needs_root
@needs_build_entrypoint
def test_source_and_build_work_with_only_the_charts_capabilities(root_dir, build_python,
                                                                 git_remote):
    """The chart drops every capability but five; fetch, build and cleanup must still work."""
    if shutil.which("setpriv") is None:
        unavailable("setpriv (util-linux) is needed to drop capabilities")
    git_remote.commit({"pipelines/hello.py": GOOD_PIPELINE})
    proc = subprocess.run(
        ["setpriv", "--no-new-privs", f"--bounding-set=-all,{CHART_CAPABILITIES}",
         "--inh-caps=-all", sys.executable, "-c", _OPERATOR_SIDE, git_remote.file_url,
         str(root_dir), build_python],
        capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["ok"], report
    assert "definition.json" in report["files"]
    assert not report["checkout_left"] and not report["bundle_left"]
