"""Who runs a step's user code, with which environment, confined how.

The runtime is split in two processes (docs/ISOLATION.md):

* the *trusted part* (``stepflow.runtime.invoke``) runs as the launcher's user, holds the
  integrity key and the store's credentials, downloads and verifies the artifacts, and
  uploads and signs what the step produced;
* the *user part* (``stepflow.runtime.user_code``), a freshly executed interpreter (not a
  fork: a fork would inherit the key and the credentials in memory), runs everything the
  user wrote — pre-execution commands, ``pip install`` of the declared dependencies,
  unpickling, the function, pickling its result — in a private folder, confined
  (:mod:`stepflow.confine`: nothing it starts outlives it) and, when the runtime is root,
  as another user (``STEPFLOW_STEP_UID``, default 65534), with an environment built from an
  allow-list plus the step's declared variables. It never has the key, the credentials or
  the operator's environment, and it touches the store only through the trusted part.

When the runtime is not root (``stepflow run`` on a laptop), the user part runs as the same
user with the same environment minus the key's variables: nothing changes for the user, and
the user's own files are theirs anyway.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from stepflow import confine
from stepflow.errors import ConfigurationError
from stepflow.runtime.handoff import STEP_ENVS_ENV
from stepflow.runtime.key import without_key

#: ``<uid>[:<gid>]`` the user part runs as, or ``none`` for the runtime's own user.
STEP_UID_ENV = "STEPFLOW_STEP_UID"
#: The interpreter of the user part; the step's user must be able to execute it (a pyenv
#: Python under a 0700 /root is not). Default: the build sandbox's (the one an installation
#: already declared every user can run), else the runtime's.
STEP_PYTHON_ENV = "STEPFLOW_STEP_PYTHON"
_BUILD_PYTHON_ENV = "STEPFLOW_BUILD_PYTHON"
#: ``namespaces`` or ``reaper`` (``stepflow.confine``); by default the best that works here.
STEP_CONFINEMENT_ENV = "STEPFLOW_STEP_CONFINEMENT"
#: The step's declared environment variables (``Environment``), as a JSON object.
STEP_ENVIRONMENT_ENV = "STEPFLOW_STEP_ENVIRONMENT"
#: What the user part may see of the runtime's environment when it runs as another user.
_PASSED = ("PATH", "LANG", "LC_ALL", "TZ", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE",
           "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_TRUSTED_HOST")


@dataclass(frozen=True)
class StepUser:
    """The user the user part runs as; ``uid`` None means the runtime's own."""

    uid: int | None = None
    gid: int | None = None

    @property
    def switches(self) -> bool:
        return self.uid is not None


def step_user(environ: Mapping[str, str] = os.environ) -> StepUser:
    """From ``STEPFLOW_STEP_UID``; by default 65534 when root, else the runtime's own user."""
    raw = environ.get(STEP_UID_ENV, "").strip()
    if not raw:
        return StepUser(confine.NOBODY, confine.NOBODY) if os.geteuid() == 0 else StepUser()
    if raw.lower() == "none":
        return StepUser()
    uid_text, _, gid_text = raw.partition(":")
    if not uid_text.isdigit() or (gid_text and not gid_text.isdigit()):
        raise ConfigurationError(
            f"{STEP_UID_ENV}={raw!r} is not <uid> or <uid>:<gid> (numbers), nor 'none'; "
            f"e.g. {STEP_UID_ENV}={confine.NOBODY}")
    uid = int(uid_text)
    gid = int(gid_text) if gid_text else uid
    if uid == os.geteuid() and gid == os.getegid():
        return StepUser()
    if os.geteuid() != 0:
        raise ConfigurationError(
            f"{STEP_UID_ENV}={raw!r}: only a runtime running as root can run steps as another "
            f"user; unset it (steps then run as uid {os.geteuid()})")
    return StepUser(uid, gid)


def declared_environment(environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """The step's declared variables, as the launcher passed them."""
    raw = environ.get(STEP_ENVIRONMENT_ENV)
    if not raw:
        return {}
    value = json.loads(raw)
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise ConfigurationError(f"{STEP_ENVIRONMENT_ENV} must be a JSON object of strings")
    return value


def user_environment(user: StepUser, environ: Mapping[str, str], *, home: Path, tmp: Path,
                     envs: Path) -> dict[str, str]:
    """The whole environment of the user part."""
    declared = declared_environment(environ)
    if user.switches:
        env = {k: environ[k] for k in _PASSED if k in environ}
        env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
        env.setdefault("LANG", "C.UTF-8")
        env.update({"HOME": str(home), "TMPDIR": str(tmp)})
    else:
        env = {k: v for k, v in without_key(environ).items() if k != STEP_ENVIRONMENT_ENV}
    env.update(declared)
    env[STEP_ENVS_ENV] = str(envs)
    return env


#: Where the step user's venvs go when the cache folder is under one it cannot enter (root's
#: default cache, ``~/.cache`` under a 0700 ``/root``).
FALLBACK_CACHE = Path("/var/cache/stepflow")


def envs_dir(user: StepUser, cache: Path) -> Path:
    """The dependency venvs' folder, owned by the step's user (made on first use)."""
    if user.uid is None:
        path = cache / "envs"
        path.mkdir(parents=True, exist_ok=True)  # confine keeps (bind-mounts) it: it must exist
        return path
    blocked = _blocking_folder(cache)
    if blocked is not None and cache != FALLBACK_CACHE and _blocking_folder(FALLBACK_CACHE) is None:
        cache, blocked = FALLBACK_CACHE, None
    path = cache / f"step-envs-{user.uid}"
    if blocked is not None:
        raise ConfigurationError(
            f"steps run as uid {user.uid} and keep their dependencies under {path}, but "
            f"{blocked} does not let others through (mode "
            f"{stat.filemode(os.stat(blocked).st_mode)}); point STEPFLOW_CACHE_DIR at a "
            f"folder under one others may traverse (chmod o+x), e.g. {FALLBACK_CACHE}")
    path.mkdir(parents=True, exist_ok=True)
    if path.stat().st_uid != user.uid:
        # Mode first: once the folder is the step user's, changing its mode needs CAP_FOWNER,
        # which the operator's pod does not have (the chart keeps CHOWN, DAC_OVERRIDE, KILL,
        # SETUID, SETGID).
        path.chmod(0o700)
        os.chown(path, user.uid, user.gid if user.gid is not None else user.uid)
    return path


def _blocking_folder(path: Path) -> Path | None:
    """The first folder on the way to ``path`` (made if missing) that others may not enter."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return path
    for folder in [*reversed(path.resolve().parents), path.resolve()]:
        if not os.stat(folder).st_mode & stat.S_IXOTH:
            return folder
    return None


def hand_over(root: Path, user: StepUser) -> None:
    """Give a folder tree to the step's user (symlinks themselves, never their targets)."""
    if not user.switches:
        return
    assert user.uid is not None
    gid = user.gid if user.gid is not None else user.uid
    for folder, dirs, files in os.walk(root):
        os.chown(folder, user.uid, gid, follow_symlinks=False)
        for name in (*dirs, *files):
            os.chown(os.path.join(folder, name), user.uid, gid, follow_symlinks=False)


#: Makes the runtime's packages importable (``site.addsitedir`` also runs their ``.pth``
#: files: editable installs), then runs the user part; works under another interpreter.
_BOOT = ("import runpy, site, sys; [site.addsitedir(d) for d in sys.argv[1].split(':') if d]; "
         "sys.argv = sys.argv[1:]; "
         "runpy.run_module('stepflow.runtime.user_code', run_name='__main__', alter_sys=True)")


def user_python(environ: Mapping[str, str] = os.environ, user: StepUser | None = None) -> str:
    """The interpreter the user part runs with (see ``STEP_PYTHON_ENV``).

    Without a setting, the runtime's own; when the step's user could not execute it (a
    pyenv or venv Python under a 0700 ``/root``: ``make demo`` run as root), the system's
    Python of the same version, which reaches the runtime's packages through ``_BOOT``.
    """
    chosen = environ.get(STEP_PYTHON_ENV) or environ.get(_BUILD_PYTHON_ENV)
    if chosen:
        return chosen
    if user is None or user.uid is None or _others_may_run(sys.executable):
        return sys.executable
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for folder in ("/usr/local/bin", "/usr/bin"):
        candidate = os.path.join(folder, version)
        if os.path.exists(candidate) and _others_may_run(candidate):
            return candidate
    return sys.executable  # the step then fails saying to set STEPFLOW_STEP_PYTHON


def _others_may_run(path: str) -> bool:
    """Whether a user who is neither the owner nor in the group may execute ``path``."""
    real = Path(os.path.realpath(path))
    try:
        return bool(real.stat().st_mode & stat.S_IXOTH) and all(
            folder.stat().st_mode & stat.S_IXOTH for folder in real.parents)
    except OSError:
        return False


def run_user_part(directory: Path, user: StepUser, env: Mapping[str, str],
                  keep: tuple[Path, ...]) -> int:
    """Run the user part on ``directory``, confined; its exit status as ``subprocess``
    reports it (negative: killed by that signal).

    Its output goes where the runtime's goes (the attempt's log).
    """
    python = user_python(os.environ, user)
    mode = os.environ.get(STEP_CONFINEMENT_ENV) or confine.best_mode(python)[0]
    if mode not in (confine.NAMESPACES, confine.REAPER):
        raise ConfigurationError(f"{STEP_CONFINEMENT_ENV}={mode!r}: use "
                                 f"{confine.NAMESPACES!r} or {confine.REAPER!r}")
    own = [p for p in sys.path if p and os.path.isdir(p)
           and not Path(p).is_relative_to(sys.base_prefix)]  # not the runtime's stdlib
    paths = [directory, *keep, *(Path(p) for p in confine.import_roots())]
    command = confine.argv(python, [python, "-s", "-c", _BOOT, ":".join(own), str(directory)],
                           mode=mode, uid=user.uid, gid=user.gid, keep=paths)
    sys.stdout.flush()
    sys.stderr.flush()
    return subprocess.run(command, cwd=directory, env=dict(env), stdin=subprocess.DEVNULL,
                          check=False).returncode
