"""The warm build worker: ``python -m stepflow.gitops.sandbox.forkserver FD STARTER``.

A cold build spends most of its time starting Python and importing stepflow, cloudpickle
and the compiler, and zipping the runtime wheel, before the user's module is even read.
This process does that once, holding no user code and no secret (it is started with the
sandbox's scrubbed environment), then forks one child per build. Each child is confined
exactly as a cold build's process is (:func:`stepflow.confine.supervise_call`: its own
supervisor, pid and mount namespaces or a subreaper, the sandbox user, the rlimits), and
runs ``stepflow.compiler.build`` in the final child instead of executing it.

It runs as the operator's user (namespaces and the uid drop need it) and only with the
interpreter of the venv without requirements, which the sandbox user never wrote to. It
dies with the operator (``PR_SET_PDEATHSIG``), and every build it started dies with it (each
supervisor has its own PDEATHSIG towards this process).

The socket ``FD`` (a ``SOCK_SEQPACKET`` pair, one JSON message per packet) carries:

* to the operator, once: ``{"ready": <pid>}``;
* from it: ``{"id", "args", "cwd", "env", "spec"}`` with the write end of the build's output
  pipe attached (``SCM_RIGHTS``);
* to it: ``{"id", "pid"}`` once the build's supervisor is forked (the pid to signal), then
  ``{"id", "status"}`` (its wait status) when it ended, or ``{"id", "error"}``.

The server stays single-threaded, so forking it is safe.
"""

from __future__ import annotations

import atexit
import json
import os
import select
import signal
import socket
import sys
import tempfile
import traceback
from typing import Any

from stepflow import confine
from stepflow.gitops.sandbox.warm import MAX_MESSAGE


def preload() -> None:
    """Import what every build imports, and build what every build builds the same way."""
    import cloudpickle  # noqa: F401

    import stepflow.backends.local  # noqa: F401 - the default session's backend
    import stepflow.compiler  # noqa: F401
    import stepflow.compiler.build  # noqa: F401
    import stepflow.compiler.loader  # noqa: F401
    import stepflow.config  # noqa: F401
    import stepflow.session  # noqa: F401
    import stepflow.workflow.function_step  # noqa: F401
    import stepflow.workflow.pipeline  # noqa: F401
    from stepflow.compiler.runtime_wheel import runtime_wheel

    runtime_wheel()  # cached per process: each fork inherits it


def _build(args: list[str], cwd: str, env: dict[str, str]) -> int:
    """In the confined final child: what ``python -s -P -m stepflow.compiler.build ARGS`` does."""
    from stepflow.compiler import build

    os.environ.clear()
    os.environ.update(env)
    tempfile.tempdir = None  # TMPDIR is the build's own
    os.chdir(cwd)
    sys.argv = [build.__file__, *args]
    try:
        code = build.main(args)
    except SystemExit as exc:  # as the interpreter turns it into an exit code
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if not isinstance(exc.code, int | None):
            print(exc.code, file=sys.stderr)
    except BaseException:  # noqa: BLE001 - what an uncaught exception does: traceback, exit 1
        traceback.print_exc()
        code = 1
    try:
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
    except BaseException:  # noqa: BLE001 - exiting anyway
        pass
    return code


def _start(request: dict[str, Any], output: int) -> int:
    """Fork the build's supervisor; in the child, become it."""
    pid = os.fork()
    if pid != 0:
        return pid
    try:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        os.setpgid(0, 0)  # the operator's backstop kills this group
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(output, 1)
        os.dup2(output, 2)
        os.closerange(3, os.sysconf("SC_OPEN_MAX"))
        spec = dict(request["spec"], starter=os.getppid())
        args, cwd, env = list(request["args"]), str(request["cwd"]), dict(request["env"])
        confine.supervise_call(spec, lambda: _build(args, cwd, env))
    finally:
        os._exit(confine.CANNOT_START)


def _send(sock: socket.socket, message: dict[str, Any]) -> None:
    sock.send(json.dumps(message).encode())


def serve(sock: socket.socket) -> None:
    """Answer requests until the operator closes its end."""
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_read, False)
    os.set_blocking(wake_write, False)
    signal.set_wakeup_fd(wake_write)
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)
    running: dict[int, Any] = {}  # supervisor pid -> request id
    _send(sock, {"ready": os.getpid()})
    while True:
        readable, _, _ = select.select([sock, wake_read], [], [])
        if wake_read in readable:
            while True:
                try:
                    if not os.read(wake_read, 512):
                        break
                except BlockingIOError:
                    break
        while running:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            if pid in running:
                _send(sock, {"id": running.pop(pid), "status": status})
        if sock in readable:
            data, fds, _, _ = socket.recv_fds(sock, MAX_MESSAGE, 1)
            if not data:
                return  # the operator is gone or closed us: the builds' PDEATHSIG does the rest
            request = json.loads(data)
            try:
                if len(fds) != 1:
                    raise OSError(f"expected the output pipe with the request, got {len(fds)} descriptors")
                pid = _start(request, fds[0])
            except OSError as exc:
                _send(sock, {"id": request.get("id"), "error": str(exc)})
            else:
                running[pid] = request["id"]
                _send(sock, {"id": request["id"], "pid": pid})
            finally:
                for fd in fds:
                    os.close(fd)


def main(argv: list[str]) -> int:
    fd, starter = int(argv[0]), int(argv[1])
    confine.die_with(starter, signal.SIGKILL)
    sock = socket.socket(fileno=fd)
    preload()
    serve(sock)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
