"""Confinement: run one command so that nothing it starts outlives it, or its starter.

Builds and steps run user code, and user code may fork, ``setsid`` and daemonize. Killing a
process group does not reach a process that left it, and a SIGKILLed starter kills nothing
at all. So such a command runs under a small *supervisor* (this file, executed as a script
with ``python -I -S``: stdlib only, ~15 ms to start), which:

* dies with its starter: ``PR_SET_PDEATHSIG`` (SIGTERM, which it handles), checked against
  the starter's pid so a starter that died during the exec is noticed too;
* in ``namespaces`` mode (needs CAP_SYS_ADMIN; probed once by :func:`probe`) unshares a
  pid namespace and forks its init, which enters a mount namespace of its own (the
  supervisor keeps the host's ``/proc``), mounts a private ``/proc`` and fresh tmpfs on
  ``/tmp``, ``/var/tmp`` and ``/dev/shm`` (bind-mounting back the folders the command
  needs, ``keep``), then forks the command. When the init exits (the command ended, or the init was killed: it has
  PDEATHSIG=SIGKILL towards the supervisor) the kernel kills every process left in the
  namespace, and the private mounts vanish with it. Nothing escapes, whatever it does;
* in ``reaper`` mode (no privileges needed) makes itself a child subreaper
  (``PR_SET_CHILD_SUBREAPER``): every orphan the command leaves, daemons included, is
  re-parented to the supervisor, which kills and reaps them all when the command ends or
  when it is told to stop. ``/tmp`` is then the host's (only ``TMPDIR`` is private);
* drops to ``uid``/``gid`` (no supplementary groups) in the final child only, so the
  command cannot signal the supervisor or the init (root-owned, and the init ignores
  signals it has no handler for); sets the rlimits there and execs the command;
* ends the way the command ended: the same exit code, or death by the same signal.

SIGTERM (or the starter's death) makes the supervisor kill everything the command started
and then SIGKILL itself, which is what a caller's timeout wants to see. When the starter
is not root, the command runs as the starter's own user and could kill the supervisor
first; the starter's process-group kill is then the only backstop.
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import signal
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

NAMESPACES = "namespaces"
REAPER = "reaper"
#: The unprivileged user (and group) builds and steps run as when their starter is root.
NOBODY = 65534
#: The exit code when the command could not be executed (as a shell says it).
CANNOT_START = 127

_PR_SET_PDEATHSIG = 1
_PR_SET_DUMPABLE = 4
_PR_SET_CHILD_SUBREAPER = 36
_CLONE_NEWNS = 0x00020000
_CLONE_NEWPID = 0x20000000
_MS_NOSUID, _MS_NODEV, _MS_NOEXEC, _MS_BIND, _MS_REC, _MS_PRIVATE = 2, 4, 8, 4096, 16384, 1 << 18
_PRIVATE_TMP = ("/tmp", "/var/tmp", "/dev/shm")


def spec(*, mode: str, uid: int | None = None, gid: int | None = None, memory_bytes: int | None = None,
         cpu_seconds: int | None = None, tmpfs_bytes: int = 512 * 1024**2,
         keep: Sequence[os.PathLike[str] | str] = ()) -> dict:
    """What the supervisor is told (JSON-able); the caller's pid is the starter.

    ``keep``: folders the command needs that may lie under a private temp dir (namespaces).
    """
    return {"mode": mode, "uid": uid, "gid": gid, "as": memory_bytes or 0, "cpu": cpu_seconds or 0,
            "tmpfs": tmpfs_bytes, "starter": os.getpid(),
            "keep": [os.path.realpath(path) for path in keep]}


def command(python: str, argv: Sequence[str], spec: dict) -> list[str]:
    """The command line that runs ``argv`` confined as ``spec`` says."""
    return [python, "-I", "-S", __file__, json.dumps(spec), *argv]


def import_roots(packages: Sequence[str] = ("stepflow", "cloudpickle")) -> list[str]:
    """The folders this interpreter's own packages come from (not its stdlib): a confined
    command must still see them under a private ``/tmp`` (``keep``), and another interpreter
    can add them to its path. A venv's prefix comes first (its ``bin/python`` is what runs);
    an editable install's source is not on ``sys.path`` (its finder maps the package there),
    so the folder holding each of ``packages`` is added too.
    """
    import importlib.util

    roots = [sys.prefix] if sys.prefix != sys.base_prefix else []
    roots += [p for p in sys.path if p and os.path.isdir(p) and not _under(p, sys.base_prefix)]
    for name in packages:
        found = importlib.util.find_spec(name)
        for location in (found.submodule_search_locations or ()) if found else ():
            roots.append(os.path.dirname(os.path.realpath(location)))
    return list(dict.fromkeys(os.path.realpath(p) for p in roots))


def _under(path: str, folder: str) -> bool:
    path, folder = os.path.realpath(path), os.path.realpath(folder)
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def argv(python: str, command_argv: Sequence[str], **options: Any) -> list[str]:
    """The command line that runs ``command_argv`` confined (``options``: :func:`spec`'s)."""
    return command(python, command_argv, spec(**options))


def die_with(starter: int, sig: int = signal.SIGKILL) -> None:
    """Get ``sig`` when the parent dies; exit now if it already did (it is not ``starter``)."""
    _prctl(_PR_SET_PDEATHSIG, sig)
    if os.getppid() != starter:
        os._exit(1)


def supervise_call(spec: dict, function: Callable[[], int]) -> NoReturn:
    """Become the supervisor of ``function``, called in the confined final child, as another
    process would be executed there; its return value is that child's exit code.

    For a fork server (``gitops.sandbox.forkserver``): the caller is a fresh fork of a
    process that holds no secret, ``spec["starter"]`` is its parent's pid. The final child
    is left dumpable, as an ``exec`` would leave it, so the command's user may read its own
    ``/proc/self``.
    """
    def call() -> None:
        _enter(spec)
        _prctl(_PR_SET_DUMPABLE, 1)
        os._exit(function())

    _supervise(spec, call)


def probe(python: str) -> str | None:
    """None when ``namespaces`` mode works here, else why not (for a log line)."""
    import subprocess

    try:
        proc = subprocess.run([python, "-I", "-S", __file__, "--probe"], capture_output=True,
                              text=True, timeout=30, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"the probe could not run: {exc}"
    if proc.returncode == 0:
        return None
    return (proc.stderr.strip().splitlines() or [f"exit code {proc.returncode}"])[-1]


_modes: dict[str, tuple[str, str | None]] = {}


def best_mode(python: str) -> tuple[str, str | None]:
    """``namespaces`` when they work here, else ``reaper`` and why; probed once per process."""
    if python not in _modes:
        problem = probe(python)
        _modes[python] = (REAPER, problem) if problem else (NAMESPACES, None)
    return _modes[python]


# -- the supervisor (runs as a script) ----------------------------------------------------


class _Stop(Exception):
    """SIGTERM, SIGINT, SIGHUP, or the starter's death."""


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def _prctl(option: int, value: int) -> None:
    _check(_libc().prctl(option, value, 0, 0, 0), f"prctl({option})")


def _mount(source: str, target: str, fstype: str | None, flags: int, data: str | None) -> None:
    _check(_libc().mount(source.encode(), target.encode(), fstype.encode() if fstype else None,
                         ctypes.c_ulong(flags), data.encode() if data else None),
           f"mount {target}")


def _private_mounts(tmpfs_bytes: int, keep: Sequence[str]) -> None:
    """In a fresh mount namespace: nothing propagates out, private /proc and temp dirs.

    The folders in ``keep`` (the checkout, the work dir) stay visible where they are, even
    under a temp dir: each is opened before the tmpfs hides it, then bind-mounted back.
    """
    _mount("none", "/", None, _MS_REC | _MS_PRIVATE, None)
    masked = [folder for folder in _PRIVATE_TMP if os.path.isdir(folder)]
    kept = [(path, os.open(path, os.O_PATH | os.O_DIRECTORY)) for path in keep
            if any(path == m or path.startswith(m + "/") for m in masked)]
    for folder in masked:
        _mount("tmpfs", folder, "tmpfs", _MS_NOSUID | _MS_NODEV,
               f"mode=1777,size={max(tmpfs_bytes, 1024 * 1024)}")
    for path, fd in kept:
        os.makedirs(path, mode=0o711, exist_ok=True)
        _mount(f"/proc/self/fd/{fd}", path, None, _MS_BIND | _MS_REC, None)
        os.close(fd)
    _mount("proc", "/proc", "proc", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC, None)


def _enter(spec: dict) -> None:
    """In the final child: default signal handling, the sandbox user, the limits."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGHUP, signal.SIG_DFL)
    if spec["uid"] is not None:
        os.setgroups([])
        os.setgid(spec["gid"] if spec["gid"] is not None else spec["uid"])
        os.setuid(spec["uid"])
    if spec["as"]:
        resource.setrlimit(resource.RLIMIT_AS, (spec["as"], spec["as"]))
    if spec["cpu"]:
        resource.setrlimit(resource.RLIMIT_CPU, (spec["cpu"], spec["cpu"] + 2))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _final(spec: dict, start: Callable[[], None]) -> NoReturn:
    """The final child: ``start`` (which execs or exits); it never returns from here."""
    try:
        start()
    except OSError as exc:
        os.write(2, f"confine: cannot start the command: {exc}\n".encode())
    finally:
        os._exit(CANNOT_START)


def _exec_command(spec: dict, command: list[str]) -> Callable[[], None]:
    """What the final child does for a command: enter the confinement, become the command."""
    def start() -> None:
        try:
            _enter(spec)
            os.execv(command[0], command)
        except OSError as exc:
            os.write(2, f"confine: cannot start {command[0]}: {exc}\n".encode())
            os._exit(CANNOT_START)
    return start


def _children() -> list[int]:
    """The supervisor's live children (a scan of /proc, which needs no kernel option)."""
    me, found = os.getpid(), []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == me and fields[0] != b"Z":
            found.append(int(entry))
    return found


def _reap_all() -> None:
    """Kill every child (orphans re-parent to us as we go) until none is left."""
    while True:
        alive = _children()
        for pid in alive:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                break
        if not alive:
            time.sleep(0.005)


def _end_like(status: int) -> NoReturn:
    """Exit the way a process with this wait status did."""
    sys.stdout.flush()
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        if sig not in (signal.SIGKILL, signal.SIGSTOP):  # those two keep their default
            signal.signal(sig, signal.SIG_DFL)
        os.kill(os.getpid(), sig)
        os.kill(os.getpid(), signal.SIGKILL)  # a signal whose default is to be ignored
    os._exit(os.waitstatus_to_exitcode(status))


def _wait_for(main: int) -> int:
    """Reap children (re-parented orphans too) until ``main`` exits; its wait status."""
    while True:
        pid, status = os.waitpid(-1, 0)
        if pid == main:
            return status


def _init(spec: dict, start: Callable[[], None], report: int) -> None:
    """PID 1 of the namespace: private mounts, the command, reaping; its status on ``report``."""
    status = 127 << 8
    try:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        # The mount namespace is the init's alone: the supervisor keeps the host's /proc.
        _check(_libc().unshare(_CLONE_NEWNS), "unshare(CLONE_NEWNS)")
        _private_mounts(spec["tmpfs"], spec["keep"])
        main = os.fork()
        if main == 0:
            os.close(report)
            _final(spec, start)
        status = _wait_for(main)
    except BaseException as exc:  # noqa: BLE001 - the init must report, whatever happened
        os.write(2, f"confine: {exc}\n".encode())
    os.write(report, str(status).encode())
    os._exit(0)  # the kernel now kills whatever is left in the namespace


def _supervise(spec: dict, start: Callable[[], None]) -> NoReturn:
    def stop(signum: int, frame: object) -> None:
        raise _Stop()

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, stop)
    try:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != spec["starter"]:
            raise _Stop()  # the starter died before PDEATHSIG was armed
        if spec["mode"] == NAMESPACES:
            _check(_libc().unshare(_CLONE_NEWPID), "unshare(CLONE_NEWPID)")
            read, write = os.pipe()
            init = os.fork()
            if init == 0:
                os.close(read)
                _init(spec, start, write)
            os.close(write)
            _wait_for(init)
            reported = os.read(read, 64)
            _end_like(int(reported) if reported else 127 << 8)
        _prctl(_PR_SET_CHILD_SUBREAPER, 1)
        main = os.fork()
        if main == 0:
            _final(spec, start)
        status = _wait_for(main)
        _reap_all()
        _end_like(status)
    except _Stop:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        _reap_all()
        os.kill(os.getpid(), signal.SIGKILL)
    raise AssertionError("unreachable")  # _end_like and SIGKILL do not return


def _probe() -> int:
    """Exit 0 when the namespace mode works: unshare, fork an init, mount, run a process."""
    try:
        _check(_libc().unshare(_CLONE_NEWPID), "unshare(CLONE_NEWPID)")
        pid = os.fork()
        if pid == 0:
            try:
                _check(_libc().unshare(_CLONE_NEWNS), "unshare(CLONE_NEWNS)")
                _private_mounts(1024 * 1024, ["/tmp"])
                os._exit(0 if os.getpid() == 1 else 1)
            except OSError as exc:
                os.write(2, f"{exc}\n".encode())
                os._exit(1)
        _, status = os.waitpid(pid, 0)
        return os.waitstatus_to_exitcode(status)
    except OSError as exc:
        print(exc, file=sys.stderr)
        return 1


if __name__ == "__main__":
    if sys.argv[1:] == ["--probe"]:
        sys.exit(_probe())
    _spec = json.loads(sys.argv[1])
    _supervise(_spec, _exec_command(_spec, sys.argv[2:]))
