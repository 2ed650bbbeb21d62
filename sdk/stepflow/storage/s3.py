"""S3 (or any S3-compatible server) as an object store, through boto3.

Creating a boto3 client costs tens of milliseconds and a client is thread-safe, so clients
are cached per process by endpoint and credential environment and shared by every store and
thread. Credentials come from the standard AWS chain and are never logged.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterator
from os import PathLike
from typing import Any

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from stepflow.errors import StorageError
from stepflow.storage.base import NotFound, ObjectInfo, ObjectStore, PreconditionFailed, check_key

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

_clients: dict[str, Any] = {}
_clients_lock = threading.Lock()


def _client_for(endpoint_url: str | None) -> Any:
    # Hash the credential environment so the cache key holds no secret in clear.
    fingerprint = hashlib.sha256(
        "\0".join([endpoint_url or ""] + [os.environ.get(name, "") for name in _CLIENT_ENV]).encode()
    ).hexdigest()
    with _clients_lock:
        client = _clients.get(fingerprint)
        if client is None:
            session = boto3.session.Session()
            client = session.client(
                "s3",
                endpoint_url=endpoint_url,
                region_name=session.region_name or "us-east-1",
                config=Config(
                    retries={"max_attempts": 5, "mode": "standard"},
                    max_pool_connections=_MAX_CONNECTIONS,
                    connect_timeout=10,
                    read_timeout=120,
                    # S3-compatible servers rarely resolve bucket subdomains.
                    s3={"addressing_style": "path"} if endpoint_url else None,
                    # The body's SHA-256 is recorded in metadata; a CRC per request only adds CPU.
                    request_checksum_calculation="when_required",
                    response_checksum_validation="when_required",
                ),
            )
            _clients[fingerprint] = client
        return client


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
        self._client: Any = None

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = _client_for(self.endpoint_url)
        return self._client

    def _key(self, key: str) -> str:
        return self._base + check_key(key)

    def _error(self, exc: Exception, action: str, where: str) -> StorageError:
        """Turn a boto error into one that says what failed and what to do about it."""
        endpoint = self.endpoint_url or "the default AWS endpoint"
        if isinstance(exc, NoCredentialsError):
            return StorageError(
                f"Cannot {action} {where}: no AWS credentials found. Set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY, or AWS_PROFILE, or run where an IAM role is available.",
                reason="NoCredentials",
            )
        if isinstance(exc, ClientError):
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
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
            return StorageError(
                f"Cannot {action} {where}: {code or status}: {error.get('Message', exc)}.",
            )
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
