"""S3 (or any S3-compatible server) as an object store, through boto3.

Creating a boto3 client costs tens of milliseconds and a client is thread-safe, so clients
are cached per process by endpoint and credential environment and shared by every store and
thread. Credentials come from the standard AWS chain and are never logged.

Publishing a 1,000-step pipeline is ~4,000 small PUTs, and botocore spends about a
millisecond of CPU on each (parameter validation, serialisation, event hooks, retry
handlers), under the GIL. :meth:`S3Store.put_many` therefore sends single PUTs itself: the
URL, signing region and credentials are taken once from the boto3 client (so addressing and
endpoint resolution are boto3's), each request is signed by botocore's own SigV4 signer and
sent on a shared urllib3 pool. Everything else, multipart uploads and region redirects
included, stays on boto3.
"""

from __future__ import annotations

import hashlib
import html
import os
import random
import re
import secrets
import threading
import time
import urllib.request
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from os import PathLike
from typing import Any
from urllib.parse import quote, urlsplit

import boto3
import botocore.session
import urllib3
from boto3.s3.transfer import TransferConfig
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest, AWSResponse
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError
from botocore.httpsession import get_cert_path

from stepflow.errors import StorageError
from stepflow.storage.base import (
    NotFound,
    ObjectInfo,
    ObjectStore,
    PreconditionFailed,
    Source,
    check_key,
    map_parallel,
)

__all__ = ["S3Store"]

# Objects up to this size are uploaded with one PutObject; larger ones stream as multipart.
_SINGLE_PUT_LIMIT = 16 * 1024 * 1024
_CHUNK = 1 << 20
# Publishing uploads with up to this many threads sharing one client.
_MAX_CONNECTIONS = 64
# Environment that selects credentials and region; a change of any of them needs a new client.
_CLIENT_ENV = (
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE",
)

# The same limits for boto3 and for put_many's own requests.
_ATTEMPTS = 5
_CONNECT_TIMEOUT = 10
_READ_TIMEOUT = 120
# put_many's backoff between attempts: full jitter, uniform in [0, min(cap, base * 2**n)).
_BACKOFF_BASE = 0.1
_BACKOFF_CAP = 5.0


@dataclass
class _Connection:
    """One boto3 client and what put_many's lean path borrows from it."""

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
                    num_pools=4, maxsize=_MAX_CONNECTIONS, retries=False,
                    timeout=urllib3.Timeout(connect=_CONNECT_TIMEOUT, read=_READ_TIMEOUT),
                    cert_reqs="CERT_REQUIRED", ca_certs=self.ca_bundle,
                )
            return self.pool


_clients: dict[str, _Connection] = {}
_clients_lock = threading.Lock()


def _forget_connections() -> None:
    """In a forked child: start afresh rather than share the parent's sockets (or a held lock)."""
    global _clients, _clients_lock
    _clients, _clients_lock = {}, threading.Lock()


os.register_at_fork(after_in_child=_forget_connections)


def _connection_for(endpoint_url: str | None) -> _Connection:
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
                    retries={"max_attempts": _ATTEMPTS, "mode": "standard"},
                    max_pool_connections=_MAX_CONNECTIONS,
                    connect_timeout=_CONNECT_TIMEOUT,
                    read_timeout=_READ_TIMEOUT,
                    # S3-compatible servers rarely resolve bucket subdomains.
                    s3={"addressing_style": "path"} if endpoint_url else None,
                    # The body's SHA-256 is recorded in metadata; a CRC per request only adds CPU.
                    request_checksum_calculation="when_required",
                    response_checksum_validation="when_required",
                ),
            )
            # The client resolved these through the same session, so they are the same objects
            # (refreshable credentials refresh for both).
            connection = _Connection(
                client, core.get_credentials(), get_cert_path(core.get_config_variable("ca_bundle") or True)
            )
            _clients[fingerprint] = connection
        return connection


class _SignWithKnownDigest(S3SigV4Auth):
    """botocore's S3 SigV4 signer, fed the body's SHA-256 that put_many computed anyway.

    The signed payload hash costs nothing extra then, and unlike UNSIGNED-PAYLOAD it is
    allowed over plain http too and makes the server verify the body.
    """

    def payload(self, request: AWSRequest) -> str:
        return request.context["sha256"]


@dataclass(frozen=True)
class _PutTarget:
    """Where and how a bare PUT of this store's objects goes, as boto3 resolved it."""

    url_prefix: str  # scheme://host[/bucket]/ : a quoted key is appended
    region: str  # the SigV4 signing region and service, from boto3's own signature
    service: str
    credentials: Credentials = field(repr=False)
    connection: _Connection = field(repr=False)


_ERROR_FIELD = re.compile(rb"<(Code|Message)>([^<]*)</(?:Code|Message)>")
_RETRY_CODES = frozenset({"SlowDown", "RequestTimeout", "InternalError", "ServiceUnavailable",
                          "Throttling", "ThrottlingException", "RequestLimitExceeded"})
# Answers that mean "this bucket lives in another region": boto3 follows those.
_REDIRECT_CODES = frozenset({"PermanentRedirect", "TemporaryRedirect", "AuthorizationHeaderMalformed",
                             "IllegalLocationConstraintException"})
_SIGV4_SCOPE = re.compile(
    r"^AWS4-HMAC-SHA256 Credential=[^/]+/\d{8}/(?P<region>[^/]+)/(?P<service>[^/]+)/aws4_request,"
)


class _NoBody:
    """The raw body of the response that stands in for a request never sent."""

    def stream(self) -> Iterator[bytes]:
        return iter(())


def _error_fields(body: bytes) -> tuple[str, str]:
    """``(Code, Message)`` of an S3 XML error body; empty strings when it has none."""
    fields = {name.decode(): html.unescape(value.decode("utf-8", "replace"))
              for name, value in _ERROR_FIELD.findall(body)}
    return fields.get("Code", ""), fields.get("Message", "")


def _backoff(attempt: int) -> None:
    time.sleep(random.uniform(0, min(_BACKOFF_CAP, _BACKOFF_BASE * 2 ** attempt)))


def _etag(response: dict[str, Any]) -> str | None:
    etag = response.get("ETag")
    return etag.strip('"') if etag else None


class S3Store(ObjectStore):
    """Objects under ``s3://<bucket>/<prefix>/``."""

    def __init__(self, bucket: str, prefix: str, endpoint_url: str | None) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.endpoint_url = endpoint_url
        self.root_uri = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        self._base = f"{self.prefix}/" if self.prefix else ""
        self._connection: _Connection | None = None
        self._target: _PutTarget | None = None

    @property
    def connection(self) -> _Connection:
        if self._connection is None or self._connection.pid != os.getpid():
            self._connection = _connection_for(self.endpoint_url)
            self._target = None
        return self._connection

    @property
    def client(self) -> Any:
        return self.connection.client

    def _key(self, key: str) -> str:
        return self._base + check_key(key)

    def _error(self, exc: Exception, action: str, where: str) -> StorageError:
        """Turn a boto error into one that says what failed and what to do about it."""
        if isinstance(exc, NoCredentialsError):
            return StorageError(
                f"Cannot {action} {where}: no AWS credentials found. Set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY, or AWS_PROFILE, or run where an IAM role is available.",
                reason="NoCredentials",
            )
        if isinstance(exc, ClientError):
            error = exc.response.get("Error", {})
            return self._refused(
                str(error.get("Code", "")), exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode"),
                str(error.get("Message", exc)), action, where,
            )
        return self._unreachable(exc, action, where)

    def _refused(self, code: str, status: int | None, message: str, action: str, where: str) -> StorageError:
        """The error for a request the server answered with ``code`` (S3's error code) and ``status``."""
        endpoint = self.endpoint_url or "the default AWS endpoint"
        if code in ("NoSuchKey", "404", "NotFound"):
            return NotFound(f"No object at {where}.")
        if code in ("PreconditionFailed", "ConditionalRequestConflict") or status == 412:
            return PreconditionFailed(
                f"{where} already exists; a conditional create never overwrites."
            )
        if code == "NoSuchBucket":
            return StorageError(
                f"Cannot {action} {where}: bucket {self.bucket!r} does not exist at {endpoint}. "
                "Create it, or point s3_root_uri (STEPFLOW_S3_ROOT_URI) at an existing bucket.",
                reason="BucketNotFound",
            )
        if code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403") \
                or status == 403:
            return StorageError(
                f"Cannot {action} {where}: access denied ({code}). Check the AWS credentials "
                "in use and that they may read and write this bucket and prefix.",
                reason="AccessDenied",
            )
        return StorageError(f"Cannot {action} {where}: {code or status}: {message}.")

    def _unreachable(self, exc: Exception, action: str, where: str) -> StorageError:
        endpoint = self.endpoint_url or "the default AWS endpoint"
        return StorageError(
            f"Cannot {action} {where}: {exc}. Check that {endpoint} is reachable "
            "(STEPFLOW_S3_ENDPOINT_URL) and retry.",
            reason="EndpointUnreachable",
        )

    def put_bytes(self, key: str, data: bytes, *, if_none_match: bool = False) -> ObjectInfo:
        digest = hashlib.sha256(data).hexdigest()
        extra = {"IfNoneMatch": "*"} if if_none_match else {}
        try:
            response = self.client.put_object(
                Bucket=self.bucket, Key=self._key(key), Body=data, Metadata={"sha256": digest}, **extra
            )
        except (BotoCoreError, ClientError) as exc:
            raise self._error(exc, "write", self.uri(key)) from exc
        return ObjectInfo(key, len(data), digest, _etag(response))

    def put_file(self, key: str, path: str | PathLike[str]) -> ObjectInfo:
        size = os.path.getsize(path)
        if size <= _SINGLE_PUT_LIMIT:
            with open(path, "rb") as src:
                return self.put_bytes(key, src.read())
        digest = hashlib.sha256()
        with open(path, "rb") as src:
            while chunk := src.read(_CHUNK):
                digest.update(chunk)
        try:
            self.client.upload_file(
                os.fspath(path), self.bucket, self._key(key),
                ExtraArgs={"Metadata": {"sha256": digest.hexdigest()}},
                Config=TransferConfig(multipart_threshold=_SINGLE_PUT_LIMIT),
            )
        except (BotoCoreError, ClientError) as exc:
            raise self._error(exc, "write", self.uri(key)) from exc
        info = self.head(key)
        if info is None:
            raise StorageError(f"{self.uri(key)} is missing right after it was uploaded; retry.")
        return info

    def put_many(self, items: Iterable[tuple[str, Source]], *, workers: int = 16) -> list[ObjectInfo]:
        """Upload many objects with one signed urllib3 request each (see the module docstring).

        Same objects, metadata and error reasons as :meth:`put_bytes`; files above the
        single-PUT limit go through boto3's multipart upload, and when boto3 would sign in
        a way this path does not reproduce (no SigV4, a proxy in between) all of it does.
        """
        items = list(items)
        if not items:
            return []
        target = self._put_target()
        if target is None:
            return super().put_many(items, workers=workers)
        return map_parallel(lambda item: self._put_one(target, *item), items, workers)

    def _put_target(self) -> _PutTarget | None:
        """Where boto3 would send a PutObject of this bucket, and how it would sign it.

        Learnt once by letting the client prepare a PutObject and intercepting it before it
        is sent, so the endpoint, addressing style and signing region are whatever boto3
        resolves (nothing goes on the wire). ``None`` when its signature is not SigV4 or a
        proxy is in the way: then put_many uses boto3 for everything.
        """
        connection = self.connection  # first: a forked child must not reuse its parent's target
        if self._target is None:
            marker = f"stepflow-put-many-{secrets.token_hex(8)}"
            prepared: list[Any] = []

            def intercept(request: Any, **_: Any) -> AWSResponse | None:
                if urlsplit(request.url).path.endswith(marker):
                    prepared.append(request)
                    return AWSResponse(request.url, 200, {}, _NoBody())
                return None

            events = self.client.meta.events
            events.register_first("before-send.s3.PutObject", intercept)
            try:
                self.client.put_object(Bucket=self.bucket, Key=marker, Body=b"")
            except (BotoCoreError, ClientError) as exc:
                raise self._error(exc, "write", self.root_uri) from exc
            finally:
                events.unregister("before-send.s3.PutObject", intercept)
            url = prepared[0].url
            authorization = prepared[0].headers.get("Authorization") or ""
            if isinstance(authorization, bytes):
                authorization = authorization.decode()
            scope = _SIGV4_SCOPE.match(authorization)
            credentials = connection.credentials
            if credentials is None or scope is None or not url.endswith(marker) or _proxied(url):
                return None
            self._target = _PutTarget(
                url_prefix=url[: -len(marker)], region=scope["region"], service=scope["service"],
                credentials=credentials, connection=connection,
            )
        return self._target

    def _put_one(self, target: _PutTarget, key: str, source: Source) -> ObjectInfo:
        url = target.url_prefix + quote(self._key(key), safe="/~")  # quoted as boto3 does
        where = self.uri(key)
        if isinstance(source, bytes):
            data = source
        elif os.path.getsize(source) > _SINGLE_PUT_LIMIT:
            return self.put_file(key, source)
        else:
            with open(source, "rb") as src:
                data = src.read()
        digest = hashlib.sha256(data).hexdigest()
        pool = target.connection.http()
        failure: StorageError | None = None
        for attempt in range(_ATTEMPTS):
            if attempt:
                _backoff(attempt - 1)
            request = AWSRequest(method="PUT", url=url, data=data, headers={"x-amz-meta-sha256": digest})
            request.context["sha256"] = digest
            _SignWithKnownDigest(target.credentials.get_frozen_credentials(), target.service,
                                 target.region).add_auth(request)
            try:
                response = pool.urlopen("PUT", url, body=data, headers=dict(request.headers.items()),
                                        redirect=False)
            except urllib3.exceptions.HTTPError as exc:
                failure = self._unreachable(exc, "write", where)
                failure.__cause__ = exc
                continue
            if 200 <= response.status < 300:
                etag = response.headers.get("ETag")
                return ObjectInfo(key, len(data), digest, etag.strip('"') if etag else None)
            code, message = _error_fields(response.data)
            if code in _REDIRECT_CODES or 300 <= response.status < 400:
                return self.put_bytes(key, data)  # boto3 finds the bucket's region and retries there
            failure = self._refused(code, response.status, message, "write", where)
            if not (response.status >= 500 or response.status == 429 or code in _RETRY_CODES):
                break
        assert failure is not None
        raise failure

    def get_bytes(self, key: str) -> bytes:
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
            return response["Body"].read()
        except (BotoCoreError, ClientError) as exc:
            raise self._error(exc, "read", self.uri(key)) from exc

    def head(self, key: str) -> ObjectInfo | None:
        try:
            response = self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except (BotoCoreError, ClientError) as exc:
            error = self._error(exc, "describe", self.uri(key))
            if isinstance(error, NotFound):
                return None
            raise error from exc
        return ObjectInfo(
            key, response["ContentLength"], response.get("Metadata", {}).get("sha256"), _etag(response)
        )

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        if prefix:
            check_key(prefix.rstrip("/") or "/")
        paginator = self.client.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self._base + prefix):
                for item in page.get("Contents", []):
                    yield ObjectInfo(item["Key"][len(self._base):], item["Size"], None, _etag(item))
        except (BotoCoreError, ClientError) as exc:
            raise self._error(exc, "list", f"{self.root_uri}/{prefix}") from exc

    def delete(self, key: str) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self._key(key))
        except (BotoCoreError, ClientError) as exc:
            error = self._error(exc, "delete", self.uri(key))
            if not isinstance(error, NotFound):
                raise error from exc

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._key(key)}"


def _proxied(url: str) -> bool:
    """Whether the environment routes ``url`` through a proxy (boto3 honours it; put_many does not)."""
    parts = urlsplit(url)
    return bool(urllib.request.getproxies().get(parts.scheme)) and not urllib.request.proxy_bypass(parts.netloc)
