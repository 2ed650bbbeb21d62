"""Publishing a compiled bundle: upload only what the store lacks, then point to it.

``<pipeline>/.stepflow/index.json`` maps every key this pipeline has published to the
SHA-256 of its content. One GET of it tells which bundle files are already in place, so
republishing unchanged content costs one request and uploads nothing.

Order is what makes a crash harmless: artifacts first (in parallel, through the store's
bulk ``put_many``), then the definition that refers to them, then the index. A definition
is never written before all of its artifacts are, and the index never claims an object
that was not uploaded, so a publish interrupted at any point is repaired by running it
again (it re-uploads, never skips).

The bundle comes from an untrusted sandbox, so every file must live under the pipeline's
own prefix (never under ``.stepflow/``) and must hash to what the bundle claims.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from stepflow import layout
from stepflow.errors import IntegrityError, ValidationError
from stepflow.storage import InvalidKey, NotFound, ObjectStore, check_key

__all__ = [
    "PublishReport",
    "publish",
    "read_index",
    "index_bytes",
]

log = logging.getLogger(__name__)

INDEX_FORMAT = 1


class _BundleFile(Protocol):
    # Read-only properties: a frozen BundleFile satisfies them, settable attributes would not.
    @property
    def key(self) -> str: ...
    @property
    def sha256(self) -> str: ...
    @property
    def size(self) -> int: ...


class _Bundle(Protocol):
    """What publish needs of :class:`stepflow.compiler.bundle.Bundle`."""

    @property
    def pipeline_name(self) -> str: ...
    @property
    def digest(self) -> str: ...
    @property
    def definition_bytes(self) -> bytes: ...
    @property
    def files(self) -> Iterable[_BundleFile]: ...

    def path_of(self, key: str) -> Path: ...


@dataclass(frozen=True)
class PublishReport:
    """What one publish did. Counts cover the bundle's artifact files only.

    ``definition_written`` and ``index_written`` say whether the definition and the index
    were (re)written; both are false when nothing changed.
    """

    uploaded_files: int
    uploaded_bytes: int
    skipped_files: int
    skipped_bytes: int
    definition_uri: str
    definition_written: bool
    index_written: bool


def read_index(store: ObjectStore, pipeline_name: str) -> dict[str, str]:
    """The published key → sha256 map of a pipeline; empty when there is none yet.

    An unreadable index is treated as empty: the next publish then re-uploads everything,
    which is slower but never wrong.
    """
    _check_pipeline_name(pipeline_name)
    key = layout.in_pipeline(pipeline_name, layout.index_key())
    try:
        raw = store.get_bytes(key)
    except NotFound:
        return {}
    try:
        parsed = json.loads(raw)
        objects = parsed["objects"] if parsed.get("format") == INDEX_FORMAT else None
        if isinstance(objects, dict) and all(
            isinstance(k, str) and isinstance(v, str) for k, v in objects.items()
        ):
            return objects
    except (ValueError, AttributeError, KeyError, TypeError):
        pass
    log.warning("ignoring unreadable publish index %s; everything will be uploaded again",
                store.uri(key))
    return {}


def _check_pipeline_name(name: str) -> None:
    if not isinstance(name, str) or "/" in name or name in ("", ".", "..", layout.META):
        raise ValidationError(
            f"Pipeline name {name!r} cannot be a folder of the store: use letters, digits, "
            "'-' and '_' only."
        )


def _check_files(bundle: _Bundle) -> list[_BundleFile]:
    files = list(bundle.files)
    prefix = layout.in_pipeline(bundle.pipeline_name)
    reserved = layout.in_pipeline(bundle.pipeline_name, f"{layout.META}/")
    seen: set[str] = set()
    for f in files:
        try:
            check_key(f.key)
        except InvalidKey as exc:
            raise ValidationError(f"Bundle file {f.key!r}: {exc.message}") from exc
        if not f.key.startswith(prefix) or f.key.startswith(reserved):
            raise ValidationError(
                f"Bundle file {f.key!r} is outside {prefix} (or inside the reserved "
                f"{reserved}); a pipeline may only publish under its own prefix. "
                "The bundle was not produced by stepflow's compiler: compile it again."
            )
        if f.key in seen:
            raise ValidationError(f"Bundle lists {f.key!r} twice; compile it again.")
        seen.add(f.key)
    return files


def _upload_all(store: ObjectStore, bundle: _Bundle, files: list[_BundleFile], workers: int) -> int:
    """Upload in parallel (the store's bulk path); every upload must hash to what the bundle records."""
    written = store.put_many([(f.key, bundle.path_of(f.key)) for f in files], workers=workers)
    for f, info in zip(files, written, strict=False):
        if info.sha256 != f.sha256:
            raise IntegrityError(
                f"Bundle file {f.key} hashes to {info.sha256} but the bundle records {f.sha256}: "
                "it changed after compiling. Compile again; nothing will point to this upload."
            )
    return sum(info.size for info in written)


def index_bytes(pipeline_name: str, objects: dict[str, str]) -> bytes:
    body: dict[str, Any] = {
        "format": INDEX_FORMAT,
        "pipeline": pipeline_name,
        "objects": dict(sorted(objects.items())),
    }
    return json.dumps(body, separators=(",", ":")).encode()


def publish(bundle: _Bundle, store: ObjectStore, *, workers: int = 16) -> PublishReport:
    """Upload the bundle's artifacts that the store's index lacks, then its definition, then the index."""
    _check_pipeline_name(bundle.pipeline_name)
    def_key = layout.in_pipeline(bundle.pipeline_name, layout.definition_key(bundle.digest))
    def_sha = hashlib.sha256(bundle.definition_bytes).hexdigest()
    if f"sha256:{def_sha}" != bundle.digest:
        raise IntegrityError(
            f"The bundle's definition hashes to sha256:{def_sha} but the bundle records "
            f"{bundle.digest}: it changed after compiling. Compile again."
        )
    files = _check_files(bundle)

    published = read_index(store, bundle.pipeline_name)
    todo = [f for f in files if published.get(f.key) != f.sha256]
    skipped = [f for f in files if published.get(f.key) == f.sha256]

    uploaded_bytes = _upload_all(store, bundle, todo, workers)

    definition_written = published.get(def_key) != def_sha
    if definition_written:
        store.put_bytes(def_key, bundle.definition_bytes)

    updated = {**published, **{f.key: f.sha256 for f in files}, def_key: def_sha}
    index_written = updated != published
    if index_written:
        store.put_bytes(layout.in_pipeline(bundle.pipeline_name, layout.index_key()),
                        index_bytes(bundle.pipeline_name, updated))

    report = PublishReport(
        uploaded_files=len(todo),
        uploaded_bytes=uploaded_bytes,
        skipped_files=len(skipped),
        skipped_bytes=sum(f.size for f in skipped),
        definition_uri=store.uri(def_key),
        definition_written=definition_written,
        index_written=index_written,
    )
    log.info("published %s to %s: %d files (%d bytes) uploaded, %d skipped",
             bundle.pipeline_name, store.root_uri, report.uploaded_files,
             report.uploaded_bytes, report.skipped_files)
    return report
