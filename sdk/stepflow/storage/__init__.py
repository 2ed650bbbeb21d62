"""Object stores: where bundles are published and executions keep their state.

``open_store(root_uri)`` is the only constructor callers need; it does no I/O (an S3
client is created on first use), so opening a store to validate a URI is cheap.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from stepflow.errors import ConfigurationError
from stepflow.storage.base import (
    InvalidKey,
    NotFound,
    ObjectInfo,
    ObjectStore,
    PreconditionFailed,
    check_key,
)
from stepflow.storage.file import FileStore

if TYPE_CHECKING:
    from stepflow.storage.s3 import S3Store

__all__ = [
    "ENDPOINT_ENV",
    "InvalidKey",
    "NotFound",
    "ObjectInfo",
    "ObjectStore",
    "PreconditionFailed",
    "check_key",
    "open_store",
]

ENDPOINT_ENV = "STEPFLOW_S3_ENDPOINT_URL"

_BUCKET = re.compile(r"^[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]$")
_EXAMPLES = "Use s3://<bucket>/<prefix> or file:///absolute/path"


def _s3(root_uri: str, endpoint_url: str | None) -> S3Store:
    parts = urlsplit(root_uri)
    bucket, prefix = parts.netloc, parts.path.strip("/")
    if not bucket:
        raise ConfigurationError(f"S3 root URI {root_uri!r} has no bucket. {_EXAMPLES}.")
    if (not _BUCKET.match(bucket) or ".." in bucket or ".-" in bucket or "-." in bucket
            or re.match(r"^\d+\.\d+\.\d+\.\d+$", bucket)):
        raise ConfigurationError(
            f"S3 root URI {root_uri!r}: {bucket!r} is not a valid bucket name (3-63 lowercase "
            "letters, digits, '.', '-', starting and ending with a letter or digit, no '..', no IP address). "
            f"{_EXAMPLES}."
        )
    if parts.query or parts.fragment or (prefix and "" in prefix.split("/")):
        raise ConfigurationError(
            f"S3 root URI {root_uri!r} has an empty path segment, a query or a fragment. "
            f"{_EXAMPLES}."
        )
    from stepflow.storage.s3 import S3Store  # boto3 costs ~170 ms to import: only when used

    return S3Store(bucket, prefix, endpoint_url or os.environ.get(ENDPOINT_ENV) or None)


def _file(root_uri: str) -> FileStore:
    if root_uri.startswith("file:"):
        parts = urlsplit(root_uri)
        if parts.netloc not in ("", "localhost"):
            raise ConfigurationError(
                f"File root URI {root_uri!r} names host {parts.netloc!r}; only local folders "
                f"are supported. {_EXAMPLES} (three slashes)."
            )
        path = unquote(parts.path)
    else:
        path = root_uri
    if not os.path.isabs(path):
        raise ConfigurationError(
            f"Store root {root_uri!r} is a relative path; the store must not depend on the "
            f"current directory. {_EXAMPLES}, e.g. file://{os.path.abspath(os.path.expanduser(path))}."
        )
    return FileStore(Path(os.path.normpath(path)))


def open_store(root_uri: str, endpoint_url: str | None = None) -> ObjectStore:
    """Open the store rooted at ``root_uri`` (``s3://bucket/prefix``, ``file:///abs/path``, ``/abs/path``).

    The S3 endpoint is ``endpoint_url``, else ``$STEPFLOW_S3_ENDPOINT_URL``, else boto3's
    default (AWS). Raises :class:`ConfigurationError` for a URI that cannot name a store.
    """
    if not isinstance(root_uri, str) or not root_uri.strip():
        raise ConfigurationError(f"The store root URI is empty. {_EXAMPLES}.")
    scheme = urlsplit(root_uri).scheme.lower()
    if scheme == "s3":
        return _s3(root_uri, endpoint_url)
    if scheme in ("file", ""):
        return _file(root_uri)
    raise ConfigurationError(
        f"Store root URI {root_uri!r} has unsupported scheme {scheme!r}. {_EXAMPLES}."
    )
