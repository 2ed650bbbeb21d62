"""The test environment's own guarantees: waits, ports, teardown, no orphans, CI strictness."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest
from tests.testenv import (
    BinaryMissing,
    ServerProcess,
    WaitTimeout,
    bin_path,
    free_port,
    unavailable,
    wait_for,
)
from tests.testenv.binaries import REPO_ROOT


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_wait_for_returns_value_and_times_out_with_message():
    calls = iter([0, None, "", "done"])
    assert wait_for(lambda: next(calls), timeout=5, interval=0.001) == "done"

    t0 = time.monotonic()
    with pytest.raises(WaitTimeout, match="the moon to turn blue"):
        wait_for(lambda: False, timeout=0.2, interval=0.01, message="the moon to turn blue")
    assert 0.2 <= time.monotonic() - t0 < 2


def test_wait_for_ignores_only_listed_exceptions():
    attempts = []

    def flaky():
        attempts.append(1)
        if len(attempts) < 3:
            raise ConnectionRefusedError("not yet")
        return True

    assert wait_for(flaky, 5, 0.001, ignore=OSError) is True
    with pytest.raises(WaitTimeout, match="ConnectionRefusedError"):
        wait_for(lambda: (_ for _ in ()).throw(ConnectionRefusedError("x")), 0.1, 0.01,
                 ignore=OSError)
    with pytest.raises(ZeroDivisionError):
        wait_for(lambda: 1 / 0, 5, 0.01, ignore=OSError)


def test_free_ports_are_distinct_and_bindable():
    ports = {free_port() for _ in range(20)}
    assert len(ports) == 20
    for _ in range(5):
        port = free_port()
        assert port not in ports
        # bind at once: any process on the machine may take an ephemeral port later
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))


def test_stop_kills_the_whole_process_group(tmp_path):
    script = f"sleep 300 & echo $! > {tmp_path}/child.pid; wait"
    server = ServerProcess("sh-group", ["sh", "-c", script], tmp_path / "log").start()
    child = int(wait_for(lambda: (tmp_path / "child.pid").exists()
                         and (tmp_path / "child.pid").read_text().strip(), 5, 0.01,
                         "child pid file"))
    assert not _gone(child)
    server.stop(timeout=5)
    wait_for(lambda: _gone(child), 5, 0.02, "the grandchild to die with its group")
    assert not server.running()


def test_ensure_running_reports_exit_and_log_tail(tmp_path):
    from tests.testenv import ServerFailed

    server = ServerProcess("failing", ["sh", "-c", "echo boom-marker; exit 3"],
                           tmp_path / "log").start()
    wait_for(lambda: not server.running(), 5, 0.01)
    with pytest.raises(ServerFailed, match=r"(?s)exited with code 3.*boom-marker"):
        server.ensure_running()
    server.stop()


_HOLDER = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {root!r})
    from tests.testenv.procs import ServerProcess, install_signal_handlers
    install_signal_handlers()
    p = ServerProcess("sleeper", ["sleep", "300"], {log!r}).start()
    print(p.pid, flush=True)
    time.sleep(300)
""")


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_no_orphans_when_the_test_process_dies(tmp_path, sig):
    """SIGTERM runs our handler; SIGKILL leaves it to the parent-death signal."""
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER.format(root=str(REPO_ROOT), log=str(tmp_path / "log"))],
        stdout=subprocess.PIPE, text=True)
    try:
        server_pid = int(holder.stdout.readline())
        # setpriv sets the parent-death signal, then execs: kill the parent only after that
        wait_for(lambda: psutil.Process(server_pid).name() == "sleep", 5, 0.005,
                 "setpriv to exec the server")
        holder.send_signal(sig)
        holder.wait(10)
        wait_for(lambda: _gone(server_pid), 5, 0.02, f"server to die after {sig.name}")
    finally:
        holder.kill()
        holder.wait()


def test_bin_path_names_the_install_command(monkeypatch, tmp_path):
    monkeypatch.setenv("STEPFLOW_TESTENV_CACHE", str(tmp_path / "empty"))
    with pytest.raises(BinaryMissing, match="scripts/testenv install"):
        bin_path("kube-apiserver")
    with pytest.raises(KeyError):
        bin_path("no-such-tool")


def test_unavailable_skips_locally_and_fails_in_ci(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="needs X"):
        unavailable("needs X")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="needs X"):
        unavailable("needs X")


def _run_inner(tmp_path: Path, test_src: str, env_extra: dict[str, str]) -> subprocess.CompletedProcess:
    (tmp_path / "conftest.py").write_text(
        f"import sys\nsys.path.insert(0, {str(REPO_ROOT)!r})\n"
        "from tests.testenv.plugin import *  # noqa\n")
    (tmp_path / "test_inner.py").write_text(textwrap.dedent(test_src))
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "PYTEST_ADDOPTS")}
    env.update(env_extra)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs",
         f"--rootdir={tmp_path}", "-c", os.devnull, str(tmp_path)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)


def test_failure_report_carries_server_log_tail(tmp_path):
    out = _run_inner(tmp_path, """
        def test_fails(s3):
            s3.client().put_object(Bucket=s3.bucket, Key="k", Body=b"v")
            assert False, "deliberate"
    """, {})
    assert out.returncode == 1, out.stdout + out.stderr
    assert "testenv: s3_server server logs (tail)" in out.stdout
    assert "versitygw" in out.stdout


def test_missing_binaries_skip_locally_but_fail_in_ci(tmp_path):
    src = """
        def test_needs_s3(s3):
            pass
    """
    empty = {"STEPFLOW_TESTENV_CACHE": str(tmp_path / "no-cache")}
    local = _run_inner(tmp_path, src, empty)
    assert local.returncode == 0, local.stdout
    assert "1 skipped" in local.stdout and "scripts/testenv install" in local.stdout

    ci = _run_inner(tmp_path, src, {**empty, "CI": "true"})
    assert ci.returncode == 1, ci.stdout
    assert "1 error" in ci.stdout and "scripts/testenv install" in ci.stdout
