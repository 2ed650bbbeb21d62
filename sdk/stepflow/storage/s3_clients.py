"""One boto3 client per endpoint and credential environment, per process.

Creating a boto3 client costs tens of milliseconds and a client is thread-safe, so clients
are cached by endpoint and credential environment and shared by every store and thread.
Each comes with the credentials it resolved and, on first use, the urllib3 pool that
:mod:`stepflow.storage.s3_transport` sends its PUTs on. Credentials come from the standard
AWS chain and are never logged; a forked child starts with no clients at all.

Every request has a deadline: a store that accepts connections and never answers (a frozen
server, a black-holed route) must fail a call, not hang it, or a reconcile waiting on it
hangs with it. Each attempt waits at most ``STEPFLOW_S3_TIMEOUT`` seconds for the connection
and for each answer, and a call makes at most ``STEPFLOW_S3_ATTEMPTS`` attempts (retrying
only what S3 says is transient), so no call outlives ``attempts x timeout`` plus backoff.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import boto3
import botocore.session
import urllib3
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.httpsession import get_cert_path

from stepflow.errors import ConfigurationError

# Publishing uploads with up to this many threads sharing one client.
MAX_CONNECTIONS = 64
# The same limits for boto3 and for the signed-PUT transport's own requests (defaults).
ATTEMPTS = 5
TIMEOUT = 20.0
TIMEOUT_ENV = "STEPFLOW_S3_TIMEOUT"
ATTEMPTS_ENV = "STEPFLOW_S3_ATTEMPTS"
# Environment that selects credentials, region and limits; a change of any needs a new client.
_CLIENT_ENV = (
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE",
    TIMEOUT_ENV, ATTEMPTS_ENV,
)


@dataclass(frozen=True)
class Limits:
    """How long one attempt may wait (to connect, and for each answer), and how many attempts."""

    timeout: float = TIMEOUT
    attempts: int = ATTEMPTS

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Limits:
        """From ``STEPFLOW_S3_TIMEOUT`` (seconds) and ``STEPFLOW_S3_ATTEMPTS``; unset: the defaults."""
        timeout, attempts = TIMEOUT, ATTEMPTS
        raw = env.get(TIMEOUT_ENV)
        if raw:
            try:
                timeout = float(raw)
            except ValueError:
                timeout = 0.0
            if not 0 < timeout < 3600:
                raise ConfigurationError(f"{TIMEOUT_ENV}={raw!r} is not a number of seconds in (0, 3600); "
                                         f"unset it or give e.g. {TIMEOUT:g}")
        raw = env.get(ATTEMPTS_ENV)
        if raw:
            attempts = int(raw) if raw.isdigit() else 0
            if not 1 <= attempts <= 20:
                raise ConfigurationError(f"{ATTEMPTS_ENV}={raw!r} is not a whole number from 1 to 20; "
                                         f"unset it or give e.g. {ATTEMPTS}")
        return cls(timeout, attempts)

    def describe(self) -> str:
        """For messages: ``5 attempts of at most 20 s each (STEPFLOW_S3_TIMEOUT, STEPFLOW_S3_ATTEMPTS)``."""
        return (f"{self.attempts} attempt{'s' if self.attempts > 1 else ''} of at most {self.timeout:g} s each "
                f"({TIMEOUT_ENV}, {ATTEMPTS_ENV})")


@dataclass
class Connection:
    """One boto3 client and what the signed-PUT transport borrows from it."""

    client: Any
    credentials: Credentials | None = field(repr=False)
    ca_bundle: str | None
    limits: Limits = field(default_factory=Limits)
    pool: urllib3.PoolManager | None = field(default=None, repr=False)
    # Sockets must not be shared with a forked child: both would write to the same connection.
    pid: int = field(default_factory=os.getpid)

    def http(self) -> urllib3.PoolManager:
        with _clients_lock:
            if self.pool is None:
                self.pool = urllib3.PoolManager(
                    num_pools=4, maxsize=MAX_CONNECTIONS, retries=False,
                    timeout=urllib3.Timeout(connect=self.limits.timeout, read=self.limits.timeout),
                    cert_reqs="CERT_REQUIRED", ca_certs=self.ca_bundle,
                )
            return self.pool


_clients: dict[str, Connection] = {}
_clients_lock = threading.Lock()


def _forget_connections() -> None:
    """In a forked child: start afresh rather than share the parent's sockets (or a held lock)."""
    global _clients, _clients_lock
    _clients, _clients_lock = {}, threading.Lock()


os.register_at_fork(after_in_child=_forget_connections)


def connection_for(endpoint_url: str | None) -> Connection:
    """This process's connection to ``endpoint_url`` (None: AWS) with today's credentials."""
    # Hash the credential environment so the cache key holds no secret in clear.
    fingerprint = hashlib.sha256(
        "\0".join([endpoint_url or ""] + [os.environ.get(name, "") for name in _CLIENT_ENV]).encode()
    ).hexdigest()
    with _clients_lock:
        connection = _clients.get(fingerprint)
        if connection is None:
            limits = Limits.from_env()
            core = botocore.session.get_session()
            session = boto3.session.Session(botocore_session=core)
            client = session.client(
                "s3",
                endpoint_url=endpoint_url,
                region_name=session.region_name or "us-east-1",
                config=Config(
                    retries={"max_attempts": limits.attempts, "mode": "standard"},
                    max_pool_connections=MAX_CONNECTIONS,
                    connect_timeout=limits.timeout,
                    read_timeout=limits.timeout,
                    # S3-compatible servers rarely resolve bucket subdomains.
                    s3={"addressing_style": "path"} if endpoint_url else None,
                    # The body's SHA-256 is recorded in metadata; a CRC per request only adds CPU.
                    request_checksum_calculation="when_required",
                    response_checksum_validation="when_required",
                ),
            )
            # The client resolved these through the same session, so they are the same objects
            # (refreshable credentials refresh for both).
            connection = Connection(
                client, core.get_credentials(), get_cert_path(core.get_config_variable("ca_bundle") or True),
                limits,
            )
            _clients[fingerprint] = connection
        return connection
