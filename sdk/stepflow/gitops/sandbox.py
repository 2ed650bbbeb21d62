"""The build sandbox: user code runs here, never in the operator.

A build imports the user's module, which may do anything at import time. So it runs as a
separate process that:

* gets an environment built from an allow-list (PATH, LANG, a private HOME and TMPDIR,
  SOURCE_DATE_EPOCH, PYTHONHASHSEED, PYTHONDONTWRITEBYTECODE): nothing of the operator's
  environment, so no AWS_* and no KUBERNETES_* reach it;
* runs as another, unprivileged user (``uid``, default 65534) when the operator is root, so
  it can read neither the operator's files (the service-account token and secret files must
  be mounted 0400/0440, see the chart) nor ``/proc/<operator>/environ``;
* has a wall-clock limit (the whole process group is killed), an address-space limit
  (RLIMIT_AS: an unbounded allocation becomes ``MemoryError``) and a CPU-time limit;
* keeps only a bounded tail of its output.

When the operator is not root it cannot switch users: the build then runs as the operator's
own user and only the environment and limits protect the operator. The chart therefore
runs the operator as uid 0 with every capability dropped except the few this module needs
(CHOWN, DAC_OVERRIDE, KILL, SETUID, SETGID).

Concurrent builds share the one sandbox uid, so they are isolated from the operator but
not from each other; a multi-tenant installation that needs the latter runs builds in pods.

The repository's requirements go into a virtual environment cached by digest and created
once, under a lock, even when several builds ask for it at once. It sees the operator's
site-packages (like ``--system-site-packages``, through a ``.pth`` file so this also works
when the operator itself runs in a virtualenv), so ``stepflow`` is importable. ``pip`` runs
in the sandbox too: an sdist's ``setup.py`` is user code.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import hashlib
import json
import os
import re
import shutil
import signal
import site
import stat
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from stepflow.errors import StepflowError

BUILD_MODULE = "stepflow.compiler.build"
BUILD_TIMEOUT = "BuildTimeout"
BUILD_OUT_OF_MEMORY = "BuildOutOfMemory"
BUILD_CRASHED = "BuildCrashed"
INVALID_MODULE_PATH = "InvalidModulePath"
INVALID_REQUIREMENTS_PATH = "InvalidRequirementsPath"
REQUIREMENTS_FAILED = "RequirementsInstallFailed"
INVALID_BUNDLE = "InvalidBundle"

NOBODY = 65534
_LOG_TAIL_LINES = 40

#: Sets the limits, then becomes the real command; run with ``-S`` so it starts in ~10 ms.
_LAUNCHER = """\
import os, resource, sys
as_, cpu = int(sys.argv[1]), int(sys.argv[2])
if as_:
    resource.setrlimit(resource.RLIMIT_AS, (as_, as_))
if cpu:
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 2))
resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
os.execv(sys.argv[3], sys.argv[3:])
"""


class SandboxError(StepflowError):
    """The sandbox itself cannot work: an operator installation problem, not the user's."""

    reason = "SandboxMisconfigured"


@dataclass(frozen=True)
class Limits:
    """Per-build limits, from ``spec.build``."""

    timeout: float = 300.0
    memory_bytes: int | None = 2 * 1024**3
    cpu_seconds: int | None = None  # default: the wall-clock timeout

    @property
    def effective_cpu_seconds(self) -> int:
        return self.cpu_seconds or max(int(self.timeout) + 1, 1)


@dataclass(frozen=True)
class SandboxSettings:
    """Operator-wide configuration of the sandbox."""

    work_dir: Path
    #: The interpreter builds run with. Every user must be able to execute it (a pyenv
    #: Python under /root is not); ``STEPFLOW_BUILD_PYTHON`` overrides the default.
    python: str = field(default_factory=lambda: os.environ.get("STEPFLOW_BUILD_PYTHON")
                        or sys.executable)
    #: Made importable in every build (stepflow and its dependencies live there).
    site_dirs: tuple[str, ...] = field(default_factory=lambda: tuple(site.getsitepackages()))
    uid: int | None = field(default_factory=lambda: NOBODY if os.geteuid() == 0 else None)
    gid: int | None = field(default_factory=lambda: NOBODY if os.geteuid() == 0 else None)
    output_limit: int = 256 * 1024
    pip_limits: Limits = Limits(timeout=900.0, memory_bytes=4 * 1024**3)


@dataclass(frozen=True)
class BuildRequest:
    checkout: Path
    module: str
    s3_root_uri: str
    attr: str | None = None
    #: Relative to the checkout; None means ``requirements.txt`` when the repository has one.
    requirements: str | None = None
    previous_index: Path | None = None
    #: The commit time, so new artifact folders get a deterministic ``<ts>``.
    source_date_epoch: int | None = None
    limits: Limits = Limits()


@dataclass(frozen=True)
class BuildResult:
    ok: bool
    bundle_dir: Path | None
    reason: str | None = None
    message: str | None = None
    file: str | None = None
    line: int | None = None
    log_tail: str = ""
    user_error: bool = True


@dataclass(frozen=True)
class ProcessResult:
    """How a sandboxed process ended."""

    returncode: int
    timed_out: bool
    output: str  # the bounded tail
    output_bytes: int  # everything it wrote, counted
    duration: float

    @property
    def signal(self) -> int | None:
        return -self.returncode if self.returncode < 0 else None


class Sandbox:
    """Runs builds (and any command, for pip) as a limited, scrubbed, unprivileged process."""

    def __init__(self, settings: SandboxSettings) -> None:
        self.settings = settings
        self._venv_locks: dict[str, asyncio.Lock] = {}
        for sub, mode in (("", 0o711), ("runs", 0o711), ("builds", 0o711), ("venvs", 0o755)):
            path = settings.work_dir / sub
            path.mkdir(parents=True, exist_ok=True)
            os.chmod(path, mode)
        self._check_reachable(settings.work_dir, "the sandbox work_dir")

    def _check_reachable(self, path: Path, what: str) -> None:
        """The sandbox user must be able to walk down to ``path``; say which folder blocks it."""
        if self.settings.uid is None:
            return
        for folder in reversed(path.resolve().parents):
            if not os.stat(folder).st_mode & stat.S_IXOTH:
                raise SandboxError(
                    f"{what} {path} is under {folder}, which uid {self.settings.uid} cannot "
                    f"enter (mode {stat.filemode(os.stat(folder).st_mode)}); put it under a "
                    "folder others may traverse (chmod o+x), e.g. /var/cache/stepflow")

    # -- the build -------------------------------------------------------------------

    async def build(self, request: BuildRequest) -> BuildResult:
        """Compile ``request.module`` from the checkout into a fresh bundle folder.

        User errors come back as a ``BuildResult`` with a reason; problems of the operator's
        installation raise :class:`SandboxError`. The bundle folder belongs to the caller,
        who removes it (``shutil.rmtree``) when published.
        """
        checkout = request.checkout.resolve()
        self._check_reachable(checkout, "the checkout")
        problem = check_module_path(checkout, request.module)
        if problem:
            return BuildResult(False, None, INVALID_MODULE_PATH, problem)
        requirements, problem = _requirements_file(checkout, request.requirements)
        if problem:
            return BuildResult(False, None, INVALID_REQUIREMENTS_PATH, problem)
        self._hand_over(checkout)
        python, failure = await self.environment(requirements, cwd=checkout)
        if failure:
            return failure
        out = Path(tempfile.mkdtemp(prefix="bundle-", dir=self.settings.work_dir / "builds"))
        self._hand_over(out)
        argv = [python, "-s", "-P", "-m", BUILD_MODULE, "--module", request.module,
                "--workdir", str(checkout), "--s3-root-uri", request.s3_root_uri,
                "--out", str(out)]
        if request.attr:
            argv += ["--attr", request.attr]
        if request.previous_index is not None:
            index = out.parent / f"{out.name}.previous-index.json"
            shutil.copyfile(request.previous_index, index)
            os.chmod(index, 0o644)
            argv += ["--previous-index", str(index)]
        try:
            proc = await self.run(argv, cwd=checkout, limits=request.limits,
                                  source_date_epoch=request.source_date_epoch)
        finally:
            self._take_back(out)
            if request.previous_index is not None:
                (out.parent / f"{out.name}.previous-index.json").unlink(missing_ok=True)
        result = _interpret(proc, out, request)
        if not result.ok:
            shutil.rmtree(out, ignore_errors=True)
            return result
        problem = _check_bundle(out)
        if problem:
            shutil.rmtree(out, ignore_errors=True)
            return BuildResult(False, None, INVALID_BUNDLE, problem, log_tail=result.log_tail)
        return result

    # -- the requirements' virtual environment ---------------------------------------

    async def environment(self, requirements: Path | None, *,
                          cwd: Path) -> tuple[str, BuildResult | None]:
        """The interpreter of the venv for these requirements, creating it once per digest."""
        digest = self._venv_digest(requirements)
        venv = self.settings.work_dir / "venvs" / digest
        python = str(venv / "bin" / "python")
        if (venv / ".complete").exists():
            return python, None
        lock = self._venv_locks.setdefault(digest, asyncio.Lock())
        async with lock, _file_lock(venv.with_name(f"{digest}.lock")):
            if (venv / ".complete").exists():
                return python, None
            shutil.rmtree(venv, ignore_errors=True)  # a half-made one from a crash
            failure = await self._create_venv(venv, requirements, cwd)
            if failure:
                shutil.rmtree(venv, ignore_errors=True)
                return python, failure
            (venv / ".complete").touch()
        return python, None

    def _venv_digest(self, requirements: Path | None) -> str:
        h = hashlib.sha256()
        interpreter = os.path.realpath(self.settings.python)
        try:
            h.update(f"{interpreter}:{os.stat(interpreter).st_mtime_ns}\n".encode())
        except OSError as exc:
            raise SandboxError(f"the build interpreter {self.settings.python!r} does not exist; "
                               "set STEPFLOW_BUILD_PYTHON to a Python 3 executable") from exc
        h.update("\n".join(self.settings.site_dirs).encode() + b"\n")
        h.update(requirements.read_bytes() if requirements else b"")
        return h.hexdigest()[:32]

    async def _create_venv(self, venv: Path, requirements: Path | None,
                           cwd: Path) -> BuildResult | None:
        created = await asyncio.create_subprocess_exec(
            self.settings.python, "-m", "venv", "--without-pip", str(venv),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        out, _ = await created.communicate()
        if created.returncode != 0:
            raise SandboxError(f"`{self.settings.python} -m venv` failed: "
                               f"{out.decode(errors='replace')[-500:]}")
        purelib = next((venv / "lib").glob("python*/site-packages"))
        # Like --system-site-packages, but for the operator's site dirs even when it runs in
        # a venv itself; addsitedir also runs their .pth files (editable installs).
        lines = "".join(f"import site; site.addsitedir({d!r})\n" for d in self.settings.site_dirs)
        (purelib / "zz_stepflow_operator_site.pth").write_text(lines)
        python = str(venv / "bin" / "python")
        await self._check_runnable(python)
        if requirements is None:
            return None
        self._hand_over(venv)
        try:
            proc = await self.run(
                [python, "-s", "-m", "pip", "install", "--no-input", "--disable-pip-version-check",
                 "--no-warn-script-location", "-r", str(requirements)],
                cwd=cwd, limits=self.settings.pip_limits)
        finally:
            self._take_back(venv)
        if proc.returncode == 0:
            return None
        rel = requirements.relative_to(cwd) if requirements.is_relative_to(cwd) else requirements
        what = (f"did not finish within {self.settings.pip_limits.timeout:g}s"
                if proc.timed_out else f"failed (exit code {proc.returncode})")
        return BuildResult(
            False, None, REQUIREMENTS_FAILED,
            f"`pip install -r {rel}` {what}: {_last_error_line(proc.output)}; fix the "
            f"requirement named there (a version that exists, a reachable index) in {rel}",
            file=str(rel), log_tail=_tail(proc.output))

    async def _check_runnable(self, python: str) -> None:
        """Fail early, with a fix, when the sandbox user cannot execute the interpreter."""
        proc = await self.run([python, "-s", "-c", "import stepflow"], cwd=Path("/"),
                              limits=Limits(timeout=60.0, memory_bytes=None))
        if proc.returncode != 0:
            raise SandboxError(
                f"the build interpreter {self.settings.python!r} cannot import stepflow as uid "
                f"{self.settings.uid}: {_last_error_line(proc.output)}; set "
                "STEPFLOW_BUILD_PYTHON to a Python every user can execute, with stepflow "
                "installed in a world-readable location")

    # -- running one process -----------------------------------------------------------

    async def run(self, argv: Sequence[str], *, cwd: Path, limits: Limits,
                  source_date_epoch: int | None = None) -> ProcessResult:
        """Run ``argv`` sandboxed; the output is merged, bounded, and returned at the end."""
        settings = self.settings
        scratch = Path(tempfile.mkdtemp(prefix="run-", dir=settings.work_dir / "runs"))
        home, tmp = scratch / "home", scratch / "tmp"
        home.mkdir(mode=0o700)
        tmp.mkdir(mode=0o700)
        self._hand_over(scratch)
        env = scrubbed_environment(home=home, tmp=tmp, bin_dir=Path(argv[0]).parent,
                                   source_date_epoch=source_date_epoch)
        launcher = [settings.python, "-S", "-s", "-c", _LAUNCHER,
                    str(limits.memory_bytes or 0), str(limits.effective_cpu_seconds)]
        tail = _Tail(settings.output_limit)
        loop = asyncio.get_running_loop()
        started = time.monotonic()
        try:
            transport, protocol = await loop.subprocess_exec(
                lambda: _Protocol(loop, tail), *launcher, *argv, cwd=cwd, env=env,
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                process_group=0, close_fds=True, **self._identity())
        except PermissionError as exc:
            shutil.rmtree(scratch, ignore_errors=True)
            raise SandboxError(
                f"uid {settings.uid} cannot execute {settings.python!r} ({exc.strerror}); set "
                "STEPFLOW_BUILD_PYTHON to a Python every user can execute") from exc
        timed_out = False
        try:
            await asyncio.wait_for(asyncio.shield(protocol.exited), timeout=limits.timeout)
        except asyncio.TimeoutError:
            timed_out = True
        finally:
            _kill_group(transport.get_pid())  # stragglers, or everything on timeout/cancel
            await protocol.exited
            # A process that left the group could hold the pipe open: do not wait for it.
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(protocol.closed), timeout=2.0)
            transport.close()
            shutil.rmtree(scratch, ignore_errors=True)
        returncode = transport.get_returncode()
        assert returncode is not None
        return ProcessResult(returncode=returncode, timed_out=timed_out, output=tail.text(),
                             output_bytes=tail.total, duration=time.monotonic() - started)

    def _identity(self) -> dict[str, object]:
        if self.settings.uid is None:
            return {}
        return {"user": self.settings.uid, "group": self.settings.gid, "extra_groups": []}

    def _hand_over(self, root: Path) -> None:
        """Give a tree to the sandbox user (symlinks themselves, never what they point at)."""
        if self.settings.uid is not None:
            _chown_tree(root, self.settings.uid, self.settings.gid or self.settings.uid)

    def _take_back(self, root: Path) -> None:
        """Make a tree the operator's again, read-only to others; the sandbox can't change it."""
        if self.settings.uid is None:
            return
        _chown_tree(root, os.geteuid(), os.getegid())
        for path in _walk(root):
            st = os.lstat(path)
            if not stat.S_ISLNK(st.st_mode):
                os.chmod(path, stat.S_IMODE(st.st_mode) & ~0o022 | 0o444
                         | (0o111 if stat.S_ISDIR(st.st_mode) else 0))


def scrubbed_environment(*, home: Path, tmp: Path, bin_dir: Path,
                         source_date_epoch: int | None) -> dict[str, str]:
    """The whole environment of a sandboxed process: an allow-list, nothing inherited."""
    env = {
        "PATH": f"{bin_dir}:/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "HOME": str(home),
        "TMPDIR": str(tmp),
        "PYTHONHASHSEED": "0",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    if source_date_epoch is not None:
        env["SOURCE_DATE_EPOCH"] = str(int(source_date_epoch))
    return env


_DOTTED = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


def check_module_path(checkout: Path, module: str) -> str | None:
    """Why ``module`` is not a module inside the checkout, or None when it is fine.

    A path (``pipelines/churn.py``) must be relative, without ``..``, and must not resolve
    through a symlink to outside the checkout; a dotted name (``pipelines.churn``) must be
    identifiers, and its files, when present, must stay inside too.
    """
    hint = ("set spec.module to a path relative to the repository root, like "
            "'pipelines/churn.py', or a dotted module name, like 'pipelines.churn'")
    if not module or "\0" in module or "\\" in module:
        return f"spec.module {module!r} is not a module path; {hint}"
    if "/" in module or module.endswith(".py"):
        if module.startswith("/"):
            return f"spec.module {module!r} is absolute; {hint}"
        if ".." in module.split("/"):
            return f"spec.module {module!r} leaves the repository through '..'; {hint}"
        candidates = [module]
    elif _DOTTED.match(module):
        base = module.replace(".", "/")
        parts = base.split("/")
        candidates = ["/".join(parts[:i]) for i in range(1, len(parts))]
        candidates += [f"{base}.py", f"{base}/__init__.py", base]
    else:
        return f"spec.module {module!r} is neither a file path nor a dotted module name; {hint}"
    root = os.path.realpath(checkout)
    for candidate in candidates:
        target = os.path.realpath(os.path.join(root, candidate))
        if os.path.lexists(os.path.join(root, candidate)) and \
                os.path.commonpath([root, target]) != root:
            return (f"spec.module {module!r} resolves through a symlink to outside the "
                    f"repository ({candidate} -> {target}); {hint}")
    return None


def _requirements_file(checkout: Path, name: str | None) -> tuple[Path | None, str | None]:
    if name is None:
        default = checkout / "requirements.txt"
        if not default.is_file():
            return None, None
        name = "requirements.txt"
    if name.startswith("/") or ".." in name.split("/"):
        return None, (f"spec.build.requirements {name!r} must be a path inside the repository, "
                      "like 'requirements.txt'")
    path = checkout / name
    resolved = path.resolve()
    if not resolved.is_relative_to(checkout):
        return None, (f"spec.build.requirements {name!r} resolves through a symlink to outside "
                      "the repository; point it at a file in the repository")
    if not resolved.is_file():
        return None, (f"spec.build.requirements names {name!r}, which is not a file in the "
                      "repository at this commit; commit it or fix the path")
    return resolved, None


def _interpret(proc: ProcessResult, out: Path, request: BuildRequest) -> BuildResult:
    """Turn how the build ended into a result with a specific reason and a fix."""
    log = _tail(proc.output)
    limits = request.limits
    if proc.timed_out:
        return BuildResult(False, None, BUILD_TIMEOUT, (
            f"building {request.module!r} did not finish within {limits.timeout:g}s; look for "
            "an endless loop or slow work at import time (move it into a @step), or raise "
            "spec.build.timeout"), log_tail=log)
    if proc.signal == signal.SIGXCPU:
        return BuildResult(False, None, BUILD_TIMEOUT, (
            f"building {request.module!r} used more than {limits.effective_cpu_seconds}s of "
            "CPU; look for an endless loop or heavy work at import time (move it into a @step)"),
            log_tail=log)
    payload = _read_result(out)
    if payload is not None and payload.get("ok") is True and proc.returncode == 0:
        return BuildResult(True, out, log_tail=log)
    message = str(payload.get("message", "")) if payload else ""
    if (payload is None and "MemoryError" in proc.output) or "MemoryError" in message \
            or (payload or {}).get("reason") == "MemoryError":
        limit = _human_bytes(limits.memory_bytes) if limits.memory_bytes else "the machine's"
        return BuildResult(False, None, BUILD_OUT_OF_MEMORY, (
            f"building {request.module!r} ran out of memory (limit {limit}); do not load data "
            "at import time (do it inside a @step), or raise spec.build.memoryLimit"),
            file=_opt_str(payload, "file"), line=_opt_int(payload, "line"), log_tail=log)
    if payload is not None and payload.get("ok") is False:
        return BuildResult(False, None, str(payload.get("reason") or BUILD_CRASHED),
                           message or "the build failed without a message",
                           file=_opt_str(payload, "file"), line=_opt_int(payload, "line"),
                           log_tail=log)
    how = (f"was killed by signal {signal.Signals(proc.signal).name}" if proc.signal
           else f"exited with code {proc.returncode}")
    return BuildResult(False, None, BUILD_CRASHED, (
        f"the build of {request.module!r} {how} without a result: "
        f"{_last_error_line(proc.output)}; see the build log for the traceback"), log_tail=log)


def _read_result(out: Path) -> dict[str, object] | None:
    path = out / "result.json"
    if path.is_symlink() or not path.is_file():
        return None
    try:
        payload = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return payload if isinstance(payload, dict) else None


def _check_bundle(out: Path) -> str | None:
    """Only plain files and folders may be published: a symlink could point at a secret."""
    for path in _walk(out):
        mode = os.lstat(path).st_mode
        if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
            return (f"the build wrote {path.relative_to(out)}, which is not a regular file "
                    "(symlinks and special files are never published); remove whatever "
                    "creates it at import time")
    return None


def _walk(root: Path) -> Iterator[Path]:
    yield root
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in dirnames + filenames:
            yield Path(dirpath, name)


def _chown_tree(root: Path, uid: int, gid: int) -> None:
    for path in _walk(root):
        os.chown(path, uid, gid, follow_symlinks=False)


class _Tail:
    """The last ``limit`` bytes of a stream, and how many bytes there were in all."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.total = 0
        self._chunks: deque[bytes] = deque()
        self._size = 0

    def add(self, chunk: bytes) -> None:
        self.total += len(chunk)
        self._chunks.append(chunk)
        self._size += len(chunk)
        while self._size - len(self._chunks[0]) >= self.limit:
            self._size -= len(self._chunks.popleft())

    def text(self) -> str:
        data = b"".join(self._chunks)[-self.limit:]
        prefix = f"[... {self.total - len(data)} bytes cut ...]\n" if self.total > len(data) else ""
        return prefix + data.decode(errors="replace")


class _Protocol(asyncio.SubprocessProtocol):
    """Collects output and says when the process exits, which may be before its pipe closes.

    (``asyncio.subprocess.Process.wait`` also waits for the pipes, so a grandchild that
    escaped the process group and kept stdout would hold it forever.)
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, tail: _Tail) -> None:
        self.tail = tail
        self.exited: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        self.tail.add(data)

    def process_exited(self) -> None:
        if not self.exited.done():
            self.exited.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


@contextlib.asynccontextmanager
async def _file_lock(path: Path, poll: float = 0.1):  # type: ignore[no-untyped-def]
    """An exclusive flock that waits without blocking the event loop (other processes)."""
    with open(path, "a") as handle:
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                await asyncio.sleep(poll)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _tail(text: str, lines: int = _LOG_TAIL_LINES) -> str:
    return "\n".join(text.splitlines()[-lines:])


def _last_error_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in reversed(lines):
        if re.match(r"^[A-Za-z_.]*(Error|Exception)\b|^ERROR:", line):
            return line[:300]
    return lines[-1][:300] if lines else "no output"


def _human_bytes(n: int) -> str:
    for unit, size in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= size:
            return f"{n / size:g}{unit}"
    return f"{n}B"


def _opt_str(payload: Mapping[str, object] | None, key: str) -> str | None:
    value = (payload or {}).get(key)
    return str(value) if value is not None else None


def _opt_int(payload: Mapping[str, object] | None, key: str) -> int | None:
    value = (payload or {}).get(key)
    return value if isinstance(value, int) else None
