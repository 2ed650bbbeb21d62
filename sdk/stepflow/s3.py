"""``stepflow.s3``: ``sagemaker.s3``'s path helpers, uploader and downloader.

The uploader and downloader act through a session (``Session.upload_data`` & co.), which
reaches S3 through the configured endpoint (``STEPFLOW_S3_ENDPOINT_URL`` or
``Stepflow.S3EndpointUrl``), so they work against MinIO, versitygw or AWS alike.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from stepflow.errors import ValidationError

if TYPE_CHECKING:
    from stepflow.session import Session

__all__ = ["S3Downloader", "S3Uploader", "determine_bucket_and_prefix", "parse_s3_url",
           "s3_path_join"]


def s3_path_join(*args: str | None, with_end_slash: bool = False) -> str:
    """Join with ``/`` as the SDK does: a leading ``s3://`` is kept, empty and None parts
    are skipped, repeated slashes collapse, and no slash starts or ends the result (unless
    ``with_end_slash``)."""
    parts = [part for part in args if part]
    if not parts:
        return ""
    scheme = ""
    if parts[0].startswith("s3://"):
        scheme, parts[0] = "s3://", parts[0][len("s3://"):]
    path = re.sub(r"/{2,}", "/", "/".join(parts)).strip("/")
    if with_end_slash and path:
        path += "/"
    return scheme + path


def parse_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/a/b`` → ``("bucket", "a/b")``."""
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc:
        raise ValidationError(f"Expecting an s3://<bucket>/<key> URL, got {url!r}.",
                              reason="InvalidS3Url")
    return parts.netloc, parts.path.lstrip("/")


def determine_bucket_and_prefix(bucket: str | None, key_prefix: str | None,
                                sagemaker_session: Session) -> tuple[str, str]:
    """A given bucket is used as is; else the session's default bucket, with its default
    prefix in front of ``key_prefix``."""
    if bucket:
        return bucket, key_prefix or ""
    return (sagemaker_session.default_bucket(),
            s3_path_join(sagemaker_session.default_bucket_prefix, key_prefix))


def _session(session: Session | None) -> Session:
    if session is not None:
        return session
    from stepflow.session import Session

    return Session()


def _no_kms(kms_key: str | None) -> None:
    if kms_key is not None:
        raise ValidationError(
            "kms_key is not supported: stepflow writes with the bucket's default encryption. "
            "Configure default encryption on the bucket and drop kms_key.", reason="Unsupported")


class S3Uploader:
    """Static methods that upload files, strings and bytes to S3."""

    @staticmethod
    def upload(local_path: str, desired_s3_uri: str, kms_key: str | None = None,
               sagemaker_session: Session | None = None, callback: object = None) -> str:
        """Upload a file or a folder (recursively) under ``desired_s3_uri``; return its URI."""
        _no_kms(kms_key)
        bucket, prefix = parse_s3_url(desired_s3_uri)
        return _session(sagemaker_session).upload_data(local_path, bucket=bucket, key_prefix=prefix)

    @staticmethod
    def upload_string_as_file_body(body: str, desired_s3_uri: str, kms_key: str | None = None,
                                   sagemaker_session: Session | None = None) -> str:
        _no_kms(kms_key)
        bucket, key = parse_s3_url(desired_s3_uri)
        _session(sagemaker_session).upload_string_as_file_body(body, bucket, key)
        return desired_s3_uri

    @staticmethod
    def upload_bytes(b: bytes, s3_uri: str, kms_key: str | None = None,
                     sagemaker_session: Session | None = None) -> str:
        _no_kms(kms_key)
        bucket, key = parse_s3_url(s3_uri)
        _session(sagemaker_session).bucket_store(bucket).put_bytes(key, bytes(b))
        return s3_uri


class S3Downloader:
    """Static methods that download, read and list S3 objects."""

    @staticmethod
    def download(s3_uri: str, local_path: str, kms_key: str | None = None,
                 sagemaker_session: Session | None = None) -> list[str]:
        """Download the object or every object under the prefix; return the local paths."""
        _no_kms(kms_key)
        bucket, prefix = parse_s3_url(s3_uri)
        return _session(sagemaker_session).download_data(local_path, bucket, prefix)

    @staticmethod
    def read_file(s3_uri: str, sagemaker_session: Session | None = None) -> str:
        bucket, key = parse_s3_url(s3_uri)
        return _session(sagemaker_session).read_s3_file(bucket, key)

    @staticmethod
    def read_bytes(s3_uri: str, sagemaker_session: Session | None = None) -> bytes:
        bucket, key = parse_s3_url(s3_uri)
        return _session(sagemaker_session).bucket_store(bucket).get_bytes(key)

    @staticmethod
    def list(s3_uri: str, sagemaker_session: Session | None = None) -> list[str]:
        """The URIs of the objects under ``s3_uri``."""
        bucket, prefix = parse_s3_url(s3_uri)
        keys = _session(sagemaker_session).list_s3_files(bucket, prefix)
        return [s3_path_join("s3://", bucket, key) for key in keys]
