"""A local folder as an object store, laid out exactly like the S3 bucket.

Writes go to a temporary file in the destination folder and are renamed into place, so a
reader (or a crash) never sees half an object. A conditional create links the temporary
file to its name, which fails atomically if the name is taken.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
from collections.abc import Callable, Iterator
from os import PathLike
from pathlib import Path
from typing import BinaryIO

from stepflow.errors import StorageError
from stepflow.storage.base import NotFound, ObjectInfo, ObjectStore, PreconditionFailed, check_key

__all__ = ["FileStore"]

_TMP_MARK = ".stepflow-tmp."
_TMP_NAME = re.compile(r"^\..*" + re.escape(_TMP_MARK) + r"[0-9a-f]{16}$")
_CHUNK = 1 << 20


def _etag(stat: os.stat_result) -> str:
    return f"{stat.st_mtime_ns:x}-{stat.st_size:x}"


class FileStore(ObjectStore):
    """Objects are files under ``root``; a key's ``/`` separators are folders."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.root_uri = root.as_uri()

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*check_key(key).split("/"))

    def _write(self, key: str, fill: Callable[[BinaryIO], str], if_none_match: bool) -> ObjectInfo:
        """Write through a temporary sibling, then rename (or link, for a conditional create)."""
        dest = self._path(key)
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = dest.with_name(f".{dest.name}{_TMP_MARK}{secrets.token_hex(8)}")
            try:
                with open(tmp, "xb") as out:
                    digest = fill(out)
                if if_none_match:
                    try:
                        os.link(tmp, dest)
                    except FileExistsError:
                        raise PreconditionFailed(
                            f"{self.uri(key)} already exists; a conditional create never overwrites."
                        ) from None
                else:
                    os.replace(tmp, dest)
            finally:
                tmp.unlink(missing_ok=True)
            stat = dest.stat()
        except StorageError:
            raise
        except OSError as exc:
            raise StorageError(
                f"Could not write {self.uri(key)}: {exc.strerror or exc}. Check that the folder "
                "is writable and the disk is not full."
            ) from exc
        return ObjectInfo(key, stat.st_size, digest, _etag(stat))

    def put_bytes(self, key: str, data: bytes, *, if_none_match: bool = False) -> ObjectInfo:
        def fill(out: BinaryIO) -> str:
            out.write(data)
            return hashlib.sha256(data).hexdigest()

        return self._write(key, fill, if_none_match)

    def put_file(self, key: str, path: str | PathLike[str]) -> ObjectInfo:
        def fill(out: BinaryIO) -> str:
            digest = hashlib.sha256()
            with open(path, "rb") as src:
                while chunk := src.read(_CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
            return digest.hexdigest()

        return self._write(key, fill, False)

    def get_bytes(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise NotFound(f"No object at {self.uri(key)}.") from None
        except OSError as exc:
            raise StorageError(f"Could not read {self.uri(key)}: {exc.strerror or exc}.") from exc

    def head(self, key: str) -> ObjectInfo | None:
        path = self._path(key)
        try:
            with open(path, "rb") as src:
                stat = os.fstat(src.fileno())
                digest = hashlib.sha256()
                while chunk := src.read(_CHUNK):
                    digest.update(chunk)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return None
        except OSError as exc:
            raise StorageError(f"Could not read {self.uri(key)}: {exc.strerror or exc}.") from exc
        return ObjectInfo(key, stat.st_size, digest.hexdigest(), _etag(stat))

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        if prefix:
            check_key(prefix.rstrip("/") or "/")
        # Only walk the deepest folder every matching key must be under.
        folder, _, _ = prefix.rpartition("/")
        start = self.root.joinpath(*folder.split("/")) if folder else self.root
        if not start.is_dir():
            return
        found: list[tuple[str, os.stat_result]] = []
        for dirpath, dirnames, filenames in os.walk(start):
            rel_dir = os.path.relpath(dirpath, self.root).replace(os.sep, "/")
            rel_dir = "" if rel_dir == "." else rel_dir + "/"
            dirnames[:] = [d for d in dirnames if (rel_dir + d + "/").startswith(prefix)
                           or prefix.startswith(rel_dir + d + "/")]
            for name in filenames:
                key = rel_dir + name
                if key.startswith(prefix) and not _TMP_NAME.match(name):
                    try:
                        found.append((key, os.stat(os.path.join(dirpath, name))))
                    except FileNotFoundError:  # deleted while we walked
                        continue
        # S3 lists in UTF-8 byte order; sort the same way so both stores agree.
        for key, stat in sorted(found, key=lambda item: item[0].encode()):
            yield ObjectInfo(key, stat.st_size, None, _etag(stat))

    def delete(self, key: str) -> None:
        try:
            self._path(key).unlink()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return
        except OSError as exc:
            raise StorageError(f"Could not delete {self.uri(key)}: {exc.strerror or exc}.") from exc

    def uri(self, key: str) -> str:
        return self._path(key).as_uri()

