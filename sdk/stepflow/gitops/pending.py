"""Built but not yet published: a successful build's bundle kept until its publish succeeds.

A build is the expensive, deterministic part of a reconcile (a fetch, a sandboxed import, a
compile); a publish is the part that meets the network. When the store is down, full or
missing its bucket, the publish fails but the build was fine, so the retry must publish the
same bundle again, not build it again: Flux's controllers likewise keep an artifact they
produced and retry only the step that failed.

One folder per resource under the operator's work dir (``pending/<hash of ns/name>/``):
``bundle/`` (what the sandbox produced, moved here and signed once) and ``record.json`` (the
digest of the build's inputs, the build's ``lastBuild`` record, the commit time and the
number of failed publishes so far, which sets the backoff). A record whose inputs differ
from the reconcile's (a new commit, a changed spec, another store) is stale and discarded.
The folder survives an operator restart: the next process publishes what the last one built.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stepflow.compiler.bundle import Bundle
from stepflow.gitops.spec import PipelineSpec

#: First retry of a failed publish after about this long; doubled per failure up to the cap.
BACKOFF_BASE = 1.0


def build_inputs(spec: PipelineSpec, commit: str, store_root: str, key: bytes | None) -> str:
    """The digest of everything a kept bundle depends on (but the previous index, which only
    decides whether unchanged ``<ts>`` folders are reused): a bundle is signed when it is
    kept, so the key counts too (by its hash: the record holds no secret)."""
    inputs = {"url": spec.url, "commit": commit, "module": spec.module, "attr": spec.attr,
              "requirements": spec.build.requirements, "store": store_root,
              "key": hashlib.sha256(key).hexdigest() if key is not None else None}
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()


def backoff(failures: int, cap: float) -> float:
    """Seconds before retry number ``failures`` (1, 2, ...): exponential, jittered, capped."""
    delay = min(cap, BACKOFF_BASE * 2 ** max(failures - 1, 0))
    return max(0.1, delay * random.uniform(0.8, 1.0))


@dataclass
class PendingPublish:
    """A built bundle waiting to be published, and what is known about it."""

    folder: Path
    inputs: str
    last_build: dict[str, Any]
    committed_at: int
    failures: int = 0

    @property
    def bundle(self) -> Bundle:
        return Bundle.open(self.folder / "bundle")

    def failed(self) -> int:
        """Count one more failed publish; returns the new count."""
        self.failures += 1
        self._save()
        return self.failures

    def _save(self) -> None:
        record = {"inputs": self.inputs, "lastBuild": self.last_build, "committedAt": self.committed_at,
                  "failures": self.failures}
        tmp = self.folder / "record.json.tmp"
        tmp.write_text(json.dumps(record, indent=1) + "\n", "utf-8")
        tmp.replace(self.folder / "record.json")


class PendingPublishes:
    """The pending publishes of every resource this process reconciles."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def _folder(self, resource: str) -> Path:
        return self.root / hashlib.sha256(resource.encode()).hexdigest()[:24]

    def find(self, resource: str, inputs: str) -> PendingPublish | None:
        """The resource's pending publish if it was built from ``inputs``; a stale one is dropped."""
        folder = self._folder(resource)
        try:
            record: Mapping[str, Any] = json.loads((folder / "record.json").read_text("utf-8"))
        except (OSError, ValueError):
            self.discard(resource)
            return None
        if record.get("inputs") != inputs or not (folder / "bundle" / "bundle.json").is_file():
            self.discard(resource)
            return None
        return PendingPublish(folder, inputs, dict(record.get("lastBuild") or {}),
                              int(record.get("committedAt") or 0), int(record.get("failures") or 0))

    def keep(self, resource: str, inputs: str, bundle_dir: Path, last_build: Mapping[str, Any],
             committed_at: int) -> PendingPublish:
        """Take ownership of a fresh build's bundle folder (moved, not copied)."""
        self.discard(resource)
        folder = self._folder(resource)
        folder.mkdir(mode=0o700)
        shutil.move(str(bundle_dir), folder / "bundle")
        pending = PendingPublish(folder, inputs, dict(last_build), committed_at)
        pending._save()
        return pending

    def discard(self, resource: str) -> None:
        shutil.rmtree(self._folder(resource), ignore_errors=True)
