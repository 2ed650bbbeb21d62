"""One boto3 client per endpoint and credential environment, per process.

Creating a boto3 client costs tens of milliseconds and a client is thread-safe, so clients
are cached by endpoint and credential environment and shared by every store and thread.
Each comes with the credentials it resolved and, on first use, the urllib3 pool that
:mod:`stepflow.storage.s3_transport` sends its PUTs on. Credentials come from the standard
AWS chain and are never logged; a forked child starts with no clients at all.
"""

from __future__ import annotations

import hashlib
import os
import threading
from dataclasses import dataclass, field
from typing import Any

import boto3
import botocore.session
import urllib3
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.httpsession import get_cert_path

# Publishing uploads with up to this many threads sharing one client.
MAX_CONNECTIONS = 64
# The same limits for boto3 and for the signed-PUT transport's own requests.
ATTEMPTS = 5
CONNECT_TIMEOUT = 10
READ_TIMEOUT = 120
# Environment that selects credentials and region; a change of any of them needs a new client.
_CLIENT_ENV = (
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE",
)


@dataclass
class Connection:
    """One boto3 client and what the signed-PUT transport borrows from it."""

    client: Any
    credentials: Credentials | None = field(repr=False)
    ca_bundle: str | None
    pool: urllib3.PoolManager | None = field(default=None, repr=False)
    # Sockets must not be shared with a forked child: both would write to the same connection.
    pid: int = field(default_factory=os.getpid)

    def http(self) -> urllib3.PoolManager:
        with _clients_lock:
            if self.pool is None:
                self.pool = urllib3.PoolManager(
                    num_pools=4, maxsize=MAX_CONNECTIONS, retries=False,
                    timeout=urllib3.Timeout(connect=CONNECT_TIMEOUT, read=READ_TIMEOUT),
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
            core = botocore.session.get_session()
            session = boto3.session.Session(botocore_session=core)
            client = session.client(
                "s3",
                endpoint_url=endpoint_url,
                region_name=session.region_name or "us-east-1",
                config=Config(
                    retries={"max_attempts": ATTEMPTS, "mode": "standard"},
                    max_pool_connections=MAX_CONNECTIONS,
                    connect_timeout=CONNECT_TIMEOUT,
                    read_timeout=READ_TIMEOUT,
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
                client, core.get_credentials(), get_cert_path(core.get_config_variable("ca_bundle") or True)
            )
            _clients[fingerprint] = connection
        return connection
