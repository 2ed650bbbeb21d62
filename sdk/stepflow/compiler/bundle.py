"""A compiled pipeline on disk: the definition plus every artifact, laid out by store key.

The operator compiles in a sandbox and publishes from its own process; a bundle folder is
what passes between them. ``bundle.json`` lists every file with its sha256 and size so
publishing can skip what the store already has without reading the files.

    <dir>/definition.json
    <dir>/bundle.json      {"format": 1, "pipeline_name", "digest", "step_count", "files": [...]}
    <dir>/files/<key>      key relative to the store root, e.g. churn/train/<ts>/function/payload.pkl
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from stepflow import layout
from stepflow.errors import StorageError

FORMAT = 1
_WRITERS = 8


def scratch_dir() -> str:
    """A new temporary bundle folder, in memory-backed /dev/shm when there is one.

    A bundle is thousands of small files written once and read once; on a disk-backed
    file system creating them costs ten times more than on tmpfs.
    """
    shm = Path("/dev/shm")
    fast = str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None
    return tempfile.mkdtemp(prefix="stepflow-bundle-", dir=fast)


@dataclass(frozen=True)
class BundleFile:
    key: str
    sha256: str
    size: int


class Bundle:
    def __init__(self, root: Path, manifest: dict[str, Any]) -> None:
        self.root = root
        self._manifest = manifest

    @classmethod
    def open(cls, directory: str | os.PathLike[str]) -> Bundle:
        root = Path(directory)
        try:
            manifest = json.loads((root / "bundle.json").read_text("utf-8"))
        except (OSError, ValueError) as exc:
            raise StorageError(f"{root} is not a stepflow bundle (bundle.json: {exc}); "
                               "compile the pipeline first.", reason="InvalidBundle") from None
        if manifest.get("format") != FORMAT:
            raise StorageError(f"Bundle {root} has format {manifest.get('format')!r}; this "
                               f"stepflow reads format {FORMAT}. Recompile it with this version.",
                               reason="InvalidBundle")
        return cls(root, manifest)

    @classmethod
    def write(cls, directory: str | os.PathLike[str], *, pipeline_name: str,
              definition_bytes: bytes, files: Mapping[str, bytes], step_count: int) -> Bundle:
        root = Path(directory)
        entries = [{"key": key, "sha256": hashlib.sha256(files[key]).hexdigest(),
                    "size": len(files[key])} for key in sorted(files)]
        for folder in sorted({(root / "files" / key).parent for key in files}):
            folder.mkdir(parents=True, exist_ok=True)
        # Thousands of small files: the file system's latency, not the CPU, is the cost.
        with ThreadPoolExecutor(max_workers=_WRITERS) as pool:
            list(pool.map(lambda key: (root / "files" / key).write_bytes(files[key]), files))
        root.mkdir(parents=True, exist_ok=True)
        (root / "definition.json").write_bytes(definition_bytes)
        manifest = {"format": FORMAT, "pipeline_name": pipeline_name,
                    "digest": "sha256:" + hashlib.sha256(definition_bytes).hexdigest(),
                    "step_count": step_count, "files": entries}
        (root / "bundle.json").write_text(json.dumps(manifest, indent=1) + "\n", "utf-8")
        return cls(root, manifest)

    @property
    def pipeline_name(self) -> str:
        return self._manifest["pipeline_name"]

    @property
    def digest(self) -> str:
        return self._manifest["digest"]

    @property
    def step_count(self) -> int:
        return self._manifest["step_count"]

    @cached_property
    def files(self) -> list[BundleFile]:
        return [BundleFile(f["key"], f["sha256"], f["size"]) for f in self._manifest["files"]]

    @cached_property
    def definition_bytes(self) -> bytes:
        return (self.root / "definition.json").read_bytes()

    @property
    def definition(self) -> dict[str, Any]:
        return json.loads(self.definition_bytes)

    def sign(self, key: bytes) -> int:
        """HMAC-sign every artifact in place (see ``serialization.sign``); returns how many.

        Run by the trusted publisher on a bundle built in the sandbox without the key.
        """
        from stepflow.serialization import sign

        entries = {f["key"]: f for f in self._manifest["files"]}
        signed = 0
        for name, entry in entries.items():
            folder, _, file = name.rpartition("/")
            if file != layout.METADATA:
                continue
            payload_key = layout.payload_key(folder)
            if payload_key not in entries:
                continue
            path = self.path_of(name)
            data = sign(self.path_of(payload_key).read_bytes(), path.read_bytes(), key=key)
            path.write_bytes(data)
            entry["sha256"], entry["size"] = hashlib.sha256(data).hexdigest(), len(data)
            signed += 1
        (self.root / "bundle.json").write_text(json.dumps(self._manifest, indent=1) + "\n", "utf-8")
        self.__dict__.pop("files", None)
        return signed

    def path_of(self, key: str) -> Path:
        return self.root / "files" / key

    def __repr__(self) -> str:
        return (f"Bundle({self.pipeline_name!r}, {self.digest[:19]}..., "
                f"steps={self.step_count}, files={len(self.files)})")
