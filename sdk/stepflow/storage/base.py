"""The object-store interface: the one way stepflow reads and writes artifacts.

A store is rooted at a URI (``s3://bucket/prefix`` or ``file:///abs/path``) and addressed
by relative, ``/``-separated keys, so the layout is identical on every backend and a key
never escapes its root.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass
from os import PathLike
from typing import TypeVar, Union

from stepflow.errors import StorageError

__all__ = [
    "ObjectInfo", "ObjectStore", "NotFound", "PreconditionFailed", "InvalidKey", "Source",
    "check_key", "map_parallel",
]

# What put_many uploads for a key: the bytes themselves, or a local file to read them from.
Source = Union[bytes, str, "PathLike[str]"]

_T = TypeVar("_T")
_R = TypeVar("_R")


@dataclass(frozen=True)
class ObjectInfo:
    """What a store knows about one object.

    ``sha256`` is the hex digest recorded when stepflow wrote the object; ``list()`` does not
    return it (S3 listings carry no user metadata), ``head()`` and the ``put_*`` methods do.
    ``etag`` is opaque: compare it only with another etag from the same store.
    """

    key: str
    size: int
    sha256: str | None
    etag: str | None


class NotFound(StorageError):
    """The object does not exist."""

    reason = "ObjectNotFound"


class PreconditionFailed(StorageError):
    """A conditional create found the object already there."""

    reason = "PreconditionFailed"


class InvalidKey(StorageError, ValueError):
    """A key that is not a clean relative path (it could escape the store's root)."""

    reason = "InvalidKey"


_BAD_SEGMENTS = {"", ".", ".."}
_CONTROL = re.compile(r"[\x00-\x1f\x7f\\]")


def check_key(key: str) -> str:
    """Return ``key`` if it is a relative ``/``-separated path with no empty, ``.`` or ``..`` part."""
    if not isinstance(key, str) or not key or key.startswith("/") or _CONTROL.search(key) \
            or any(part in _BAD_SEGMENTS for part in key.split("/")):
        raise InvalidKey(
            f"Invalid object key {key!r}: keys are relative '/'-separated paths without empty, "
            "'.' or '..' segments, backslashes or control characters."
        )
    return key


def map_parallel(fn: Callable[[_T], _R], items: Iterable[_T], workers: int) -> list[_R]:
    """``[fn(item) for item in items]`` on up to ``workers`` threads, results in input order.

    The first failure cancels every call that has not started and is raised once the running
    ones have finished, so a caller never returns while an upload is still in flight.
    """
    work = list(items)
    if not work:
        return []
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(work))),
                            thread_name_prefix="stepflow-store") as pool:
        futures = [pool.submit(fn, item) for item in work]
        done, pending = wait(futures, return_when=FIRST_EXCEPTION)
        for future in pending:
            future.cancel()
        for future in done:
            if future.exception() is not None:
                raise future.exception()  # type: ignore[misc]
        return [future.result() for future in futures]


class ObjectStore(ABC):
    """A flat key → bytes store with S3 semantics (last writer wins, no directories)."""

    root_uri: str

    @abstractmethod
    def put_bytes(self, key: str, data: bytes, *, if_none_match: bool = False) -> ObjectInfo:
        """Write ``data`` at ``key`` and record its SHA-256.

        With ``if_none_match`` the write only happens if nothing is at ``key`` yet; otherwise
        :class:`PreconditionFailed` is raised and the existing object is untouched.
        """

    @abstractmethod
    def put_file(self, key: str, path: str | PathLike[str]) -> ObjectInfo:
        """Upload a local file (streamed, for files too large to hold in memory)."""

    def put_many(self, items: Iterable[tuple[str, Source]], *, workers: int = 16) -> list[ObjectInfo]:
        """Write many objects, each from bytes or from a local file, on up to ``workers`` threads.

        Returns one :class:`ObjectInfo` per item, in input order. The first failure stops
        the rest and is raised; objects already written stay (there is no transaction), so
        callers write whatever points to them afterwards. Stores with a cheaper bulk path
        (S3) override this; here it is a thread pool over :meth:`put_bytes` and :meth:`put_file`.
        """

        def put(item: tuple[str, Source]) -> ObjectInfo:
            key, source = item
            if isinstance(source, bytes):
                return self.put_bytes(key, source)
            return self.put_file(key, source)

        return map_parallel(put, items, workers)

    @abstractmethod
    def get_bytes(self, key: str) -> bytes:
        """Read the object at ``key``; :class:`NotFound` when there is none."""

    @abstractmethod
    def head(self, key: str) -> ObjectInfo | None:
        """Describe the object at ``key``, or ``None`` when there is none."""

    @abstractmethod
    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Every object whose key starts with ``prefix`` (a string prefix, not a folder), in key order."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove the object at ``key``; deleting a missing object is not an error."""

    @abstractmethod
    def uri(self, key: str) -> str:
        """The absolute URI of ``key`` (``s3://...`` or ``file://...``)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.root_uri!r})"
