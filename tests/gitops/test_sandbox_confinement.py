"""Nothing a build starts outlives it or the operator (stepflow.confine), in both modes.

Real processes and real signals: a build that daemonizes, an "operator" process SIGKILLed
mid-build, files written to the shared temporary folders.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import site
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from tests.testenv import wait_for

from stepflow import confine
from stepflow.gitops.sandbox import NOBODY, Limits, Sandbox, SandboxSettings

ROOT = os.geteuid() == 0

#: Forks a daemon (double fork + setsid) and a plain child, then waits for its end.
DAEMONIZING = """
import os, subprocess, sys, time
token = sys.argv[1]
sleeper = [sys.executable, "-c", "import time; time.sleep(600)", token]
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.execv(sys.executable, sleeper)
    os._exit(0)
subprocess.Popen(sleeper)
for folder in ("/tmp", "/var/tmp", "/dev/shm", os.environ["TMPDIR"]):
    with open(os.path.join(folder, token), "w") as f:
        f.write("left behind?")
print("started", flush=True)
time.sleep(float(sys.argv[2]))
"""


def _settings(root_dir: Path, python: str, mode: str) -> SandboxSettings:
    return SandboxSettings(work_dir=root_dir / "work", python=python,
                           site_dirs=tuple(site.getsitepackages()), confinement=mode)


def _script(checkout: Path) -> Path:
    script = checkout / "daemonize.py"
    script.write_text(textwrap.dedent(DAEMONIZING))
    script.chmod(0o644)
    return script


def _build_processes(token: str) -> list[tuple[int, int]]:
    """(pid, uid) of every live process whose command line carries ``token``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                if token.encode() not in f.read():
                    continue
            with open(f"/proc/{entry}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    continue
            found.append((int(entry), os.stat(f"/proc/{entry}").st_uid))
        except OSError:
            continue
    return found


def _cleanup(token: str) -> None:
    for pid, _ in _build_processes(token):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for folder in ("/tmp", "/var/tmp", "/dev/shm"):
        Path(folder, token).unlink(missing_ok=True)


def test_a_daemon_the_build_leaves_dies_with_it_and_temp_files_go(root_dir, checkout,
                                                                  build_python, mode):
    sandbox = Sandbox(_settings(root_dir, build_python, mode))
    token = f"stepflow-confine-{secrets.token_hex(6)}"
    script = _script(checkout)
    sandbox.jail.hand_over(checkout)
    try:
        proc = asyncio.run(sandbox.jail.run([build_python, str(script), token, "0.2"],
                                            cwd=checkout, limits=Limits(timeout=60)))
        assert proc.returncode == 0 and "started" in proc.output, proc.output
        assert _build_processes(token) == []
        assert not list((sandbox.settings.work_dir / "runs").iterdir())  # TMPDIR and HOME
        left = [folder for folder in ("/tmp", "/var/tmp", "/dev/shm")
                if Path(folder, token).exists()]
        assert left == ([] if mode == confine.NAMESPACES else ["/tmp", "/var/tmp", "/dev/shm"])
    finally:
        _cleanup(token)


def test_a_timed_out_build_leaves_no_daemon(root_dir, checkout, build_python, mode):
    sandbox = Sandbox(_settings(root_dir, build_python, mode))
    token = f"stepflow-confine-{secrets.token_hex(6)}"
    script = _script(checkout)
    sandbox.jail.hand_over(checkout)
    try:
        proc = asyncio.run(sandbox.jail.run([build_python, str(script), token, "600"],
                                            cwd=checkout, limits=Limits(timeout=2)))
        assert proc.timed_out and proc.signal == signal.SIGKILL
        assert _build_processes(token) == []
    finally:
        _cleanup(token)


#: The "operator": runs one sandboxed build of the daemonizing script, then waits.
OPERATOR = """
import asyncio, site, sys
from pathlib import Path
from stepflow.gitops.sandbox import Limits
from stepflow.gitops.sandbox.jail import Jail
from stepflow.gitops.sandbox.settings import SandboxSettings
work, python, mode, script, token = sys.argv[1:]
settings = SandboxSettings(work_dir=Path(work), python=python,
                           site_dirs=tuple(site.getsitepackages()), confinement=mode)
asyncio.run(Jail(settings).run([python, script, token, "600"], cwd=Path(script).parent,
                               limits=Limits(timeout=600)))
"""


def kill_operator_mid_build(root_dir: Path, checkout: Path, python: str, mode: str,
                            ) -> tuple[float, list[tuple[int, int]]]:
    """SIGKILL an operator whose build has started daemons; seconds until none is left.

    Returns the time and the build's processes as they were just before the kill.
    """
    work = root_dir / "work"
    token = f"stepflow-confine-{secrets.token_hex(6)}"
    script = _script(checkout)
    Sandbox(_settings(root_dir, python, mode)).jail.hand_over(checkout)  # makes work/ too
    operator = subprocess.Popen([sys.executable, "-c", OPERATOR, str(work), python, mode,
                                 str(script), token], stdin=subprocess.DEVNULL)
    try:
        # supervisor, (init,) the script, its child, the daemon
        expected = 5 if mode == confine.NAMESPACES else 4
        before = wait_for(lambda: len(_build_processes(token)) >= expected
                          and _build_processes(token), timeout=60,
                          message="the build's processes did not all start")
        os.kill(operator.pid, signal.SIGKILL)
        killed = time.monotonic()
        operator.wait()
        wait_for(lambda: not _build_processes(token), timeout=10, interval=0.005,
                 message="processes of the build outlived the operator")
        return time.monotonic() - killed, before
    finally:
        operator.kill()
        operator.wait()
        _cleanup(token)


def test_killing_the_operator_mid_build_kills_every_process_of_the_build(
        root_dir, checkout, build_python, mode):
    _, before = kill_operator_mid_build(root_dir, checkout, build_python, mode)
    if ROOT:  # the user's processes ran as the sandbox user, the supervisor as the operator
        assert {uid for _, uid in before} == {0, NOBODY}


#: In a child: an "editable install" of ``fakepkg`` under ``sys.argv[1]`` (a finder, as
#: setuptools writes one: the source folder is not on sys.path), then ``import_roots``.
EDITABLE = """
import importlib.util, json, os, sys
src = sys.argv[1]
class Finder:
    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if name != "fakepkg":
            return None
        folder = os.path.join(src, "fakepkg")
        return importlib.util.spec_from_file_location(
            name, os.path.join(folder, "__init__.py"), submodule_search_locations=[folder])
sys.meta_path.append(Finder)
from stepflow import confine
print(json.dumps(confine.import_roots(("stepflow", "fakepkg"))))
"""


def test_a_package_installed_under_tmp_stays_importable_under_a_private_tmp(tmp_path):
    """`make demo` in a clone under /tmp: the editable install's source was hidden by the
    build's private /tmp (namespaces mode) and the build could not import stepflow."""
    mode, problem = confine.best_mode(sys.executable)
    if mode != confine.NAMESPACES:
        assert not ROOT, f"root, yet namespaces mode does not work here: {problem}"
        return  # reaper mode keeps the host's /tmp: nothing is hidden
    src = tmp_path / "src"
    (src / "fakepkg").mkdir(parents=True)
    (src / "fakepkg" / "__init__.py").write_text("VALUE = 42\n")
    assert str(src).startswith("/tmp/")
    roots = json.loads(subprocess.run([sys.executable, "-c", EDITABLE, str(src)], check=True,
                                      capture_output=True, text=True).stdout)
    assert os.path.realpath(src) in roots
    probe = [sys.executable, "-c", f"import sys; sys.path.insert(0, {str(src)!r}); import fakepkg; "
             "print(fakepkg.VALUE)"]

    def confined(keep: list[str]) -> subprocess.CompletedProcess:
        return subprocess.run(confine.argv(sys.executable, probe, mode=mode, keep=keep),
                              capture_output=True, text=True, timeout=60)

    hidden = confined([])
    assert hidden.returncode != 0, hidden.stdout  # the private /tmp hides it
    kept = confined(roots)
    assert kept.returncode == 0 and kept.stdout.strip() == "42", kept.stderr
