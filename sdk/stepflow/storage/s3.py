"""S3 (or any S3-compatible server) as an object store, through boto3.

Clients are shared per process (:mod:`stepflow.storage.s3_clients`). :meth:`S3Store.put_many`
sends single PUTs through a lean signed transport (:mod:`stepflow.storage.s3_transport`)
instead of boto3, because publishing is thousands of small PUTs; everything else, multipart
uploads and region redirects included, stays on boto3.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Iterator
from os import PathLike
from typing import Any

import urllib3
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import BotoCoreError, ClientError, ConnectTimeoutError, NoCredentialsError, ReadTimeoutError

from stepflow.errors import StorageError
from stepflow.storage import s3_transport
from stepflow.storage.base import (
    NotFound,
    ObjectInfo,
    ObjectStore,
    PreconditionFailed,
    Source,
    check_key,
    map_parallel,
)
from stepflow.storage.s3_clients import Connection, connection_for

__all__ = ["STORE_TIMEOUT", "S3Store"]

#: The reason of a call that ran out of time (no answer within the limits of ``s3_clients``).
STORE_TIMEOUT = "StoreTimeout"

# Objects up to this size are uploaded with one PutObject; larger ones stream as multipart.
_SINGLE_PUT_LIMIT = 16 * 1024 * 1024
_CHUNK = 1 << 20


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
        self._connection: Connection | None = None
        self._target: s3_transport.PutTarget | None = None

    @property
    def connection(self) -> Connection:
        if self._connection is None or self._connection.pid != os.getpid():
            self._connection = connection_for(self.endpoint_url)
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
        # urllib3 files a refused connection (NewConnectionError) under its TimeoutError too.
        timed_out = isinstance(exc, (ReadTimeoutError, ConnectTimeoutError, urllib3.exceptions.TimeoutError)) \
            and not isinstance(exc, urllib3.exceptions.NewConnectionError)
        if timed_out:
            return StorageError(
                f"Cannot {action} {where}: {endpoint} did not answer within the deadline, "
                f"{self.connection.limits.describe()}. The server accepts no connection or is "
                "stuck; retried on the next pass.",
                reason=STORE_TIMEOUT,
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

    def put_many(self, items: Iterable[tuple[str, Source]], *, workers: int = 16) -> list[ObjectInfo]:
        """Upload many objects with one signed urllib3 request each (see ``s3_transport``).

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

    def _put_target(self) -> s3_transport.PutTarget | None:
        """The transport's target for this bucket, learnt once per connection; None: use boto3."""
        connection = self.connection  # first: a forked child must not reuse its parent's target
        if self._target is None:
            try:
                self._target = s3_transport.find_put_target(connection, self.bucket)
            except (BotoCoreError, ClientError) as exc:
                raise self._error(exc, "write", self.root_uri) from exc
        return self._target

    def _put_one(self, target: s3_transport.PutTarget, key: str, source: Source) -> ObjectInfo:
        if isinstance(source, bytes):
            data = source
        elif os.path.getsize(source) > _SINGLE_PUT_LIMIT:
            return self.put_file(key, source)
        else:
            with open(source, "rb") as src:
                data = src.read()
        digest = hashlib.sha256(data).hexdigest()
        answer = s3_transport.put(target, self._key(key), data, digest)
        if answer.ok:
            return ObjectInfo(key, len(data), digest, answer.etag)
        if answer.redirected:
            return self.put_bytes(key, data)  # boto3 finds the bucket's region and retries there
        if answer.error is not None:
            raise self._unreachable(answer.error, "write", self.uri(key)) from answer.error
        raise self._refused(answer.code, answer.status, answer.message, "write", self.uri(key))

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

