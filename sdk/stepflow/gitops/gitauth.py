"""Git credentials from a Kubernetes Secret, handed to git without leaving a trace.

HTTPS: git asks a ``GIT_ASKPASS`` helper for the username and password; our helper is a
two-line shell script that prints environment variables, so the password lives only in the
environment of the git process tree, never in a file, a URL or a command line (where ``ps``
and error messages would show it).

SSH: ssh needs the key as a file. It is written to a private 0600 file in a private 0700
directory, used for one git operation, and deleted; host keys are checked strictly against
the ``known_hosts`` given in the Secret (there is no trust-on-first-use for a controller).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
import shlex
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from stepflow.errors import ConfigurationError

_ASKPASS = """#!/bin/sh
case "$1" in
  Username*|username*) printf '%s\\n' "$STEPFLOW_GIT_USERNAME" ;;
  *) printf '%s\\n' "$STEPFLOW_GIT_PASSWORD" ;;
esac
"""

#: Environment every git call gets: no host or user config (a credential helper there could
#: store the password on disk), never a terminal prompt, English messages we can classify.
BASE_ENV: dict[str, str] = {
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_ASKPASS": "/bin/false",
    "SSH_ASKPASS": "/bin/false",
    "GCM_INTERACTIVE": "never",
    "LC_ALL": "C",
    "LANGUAGE": "C",
}


@dataclass(frozen=True)
class GitCredentials:
    """What a ``spec.source.secretRef`` Secret holds. ``repr`` never shows a secret."""

    username: str | None = None
    password: str | None = field(default=None, repr=False)
    identity: str | None = field(default=None, repr=False)
    known_hosts: str | None = field(default=None, repr=False)

    @classmethod
    def from_secret_data(cls, data: Mapping[str, str], *, secret_name: str = "") -> GitCredentials:
        """Build from a Secret's ``data`` (base64 values, as the API returns them)."""
        where = f"Secret {secret_name!r}" if secret_name else "the source Secret"
        decoded: dict[str, str] = {}
        for key in ("username", "password", "identity", "known_hosts"):
            if key in data and data[key] is not None:
                try:
                    decoded[key] = base64.b64decode(data[key], validate=True).decode()
                except (binascii.Error, UnicodeDecodeError) as exc:
                    raise ConfigurationError(
                        f"key {key!r} of {where} is not base64-encoded UTF-8 text; "
                        f"recreate it with `kubectl create secret generic ... "
                        f"--from-literal={key}=...` or --from-file",
                        reason="InvalidSecret") from exc
        credentials = cls(**decoded)
        if credentials.password is not None and credentials.identity is not None:
            raise ConfigurationError(
                f"{where} has both 'password' and 'identity'; keep 'username'/'password' for "
                "an https URL or 'identity'/'known_hosts' for an ssh URL", reason="InvalidSecret")
        if not (credentials.password or credentials.identity):
            raise ConfigurationError(
                f"{where} has neither 'username'/'password' (https) nor 'identity'/"
                "'known_hosts' (ssh); add the keys for your URL's scheme", reason="InvalidSecret")
        return credentials

    def secrets(self) -> tuple[str, ...]:
        """The values that must never appear in any output; used to redact git's stderr."""
        return tuple(v for v in (self.password, self.identity) if v)


@contextlib.contextmanager
def git_environment(url: str, credentials: GitCredentials | None) -> Iterator[dict[str, str]]:
    """Environment variables for one git operation against ``url``; files are gone on exit."""
    env = dict(BASE_ENV)
    scheme = urlsplit(url).scheme.lower()
    if credentials is None or scheme == "file":
        yield env
        return
    private_dir = tempfile.mkdtemp(prefix="stepflow-gitauth-")  # mkdtemp: mode 0700
    try:
        if scheme in ("http", "https"):
            if not credentials.password:
                raise ConfigurationError(
                    f"the URL {url!r} is {scheme} but the Secret has no 'password'; add "
                    "'username' and 'password' (a token goes in 'password')",
                    reason="InvalidSecret")
            askpass = os.path.join(private_dir, "askpass.sh")
            _write_private(askpass, _ASKPASS, mode=0o700)
            env.update(GIT_ASKPASS=askpass,
                       STEPFLOW_GIT_USERNAME=credentials.username or "git",
                       STEPFLOW_GIT_PASSWORD=credentials.password)
        elif scheme == "ssh":
            if not credentials.identity:
                raise ConfigurationError(
                    f"the URL {url!r} is ssh but the Secret has no 'identity' (a private key); "
                    "add 'identity' and 'known_hosts'", reason="InvalidSecret")
            if not credentials.known_hosts:
                raise ConfigurationError(
                    f"the Secret for {url!r} has no 'known_hosts'; host keys are verified "
                    "strictly: add the output of `ssh-keyscan <host>` as 'known_hosts'",
                    reason="InvalidSecret")
            identity = os.path.join(private_dir, "identity")
            known_hosts = os.path.join(private_dir, "known_hosts")
            key = credentials.identity if credentials.identity.endswith("\n") \
                else credentials.identity + "\n"
            _write_private(identity, key, mode=0o600)
            _write_private(known_hosts, credentials.known_hosts, mode=0o600)
            env["GIT_SSH_COMMAND"] = " ".join([
                "ssh", "-F", os.devnull, "-i", shlex.quote(identity),
                "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
                "-o", "StrictHostKeyChecking=yes",
                "-o", f"UserKnownHostsFile={shlex.quote(known_hosts)}",
                "-o", "GlobalKnownHostsFile=/dev/null"])
        yield env
    finally:
        shutil.rmtree(private_dir, ignore_errors=True)


def _write_private(path: str, text: str, *, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
