"""Garbage collection of a pipeline's published artifacts (``stepflow gc``).

Every publish of changed content adds ``<pipeline>/<step>/<ts>/`` folders (and, for
workspace steps, ``sm_rf_user_ws/<ts>/``) plus a definition under ``.stepflow/definitions/``;
nothing else ever removes them. This module decides what is still needed and deletes the rest.

What stays (the *live* definitions and everything they reference):

* the pipeline's current definition (the backend record's ``DefinitionDigest``);
* the ``keep`` newest published definitions, newest meaning the newest ``<ts>`` folder the
  definition references (``<ts>`` values are UTC timestamps, so they sort as text; a tie is
  broken by digest, which is arbitrary but stable, so a second run agrees with the first);
* every definition an unfinished execution (not Succeeded/Failed/Stopped) runs, so gc can
  never pull artifacts from under a running step.

The bootstrap channel, ``.stepflow/`` metadata and execution folders (results, logs,
records) are never deleted. The definition file of a finished execution is kept as well:
it is small, and ``stepflow status``/``result`` read it to describe that execution. Its
artifacts go, and it leaves the index, so it no longer counts as published.

Order makes a crash harmless: the pruned index is written first (it never claims an object
that is about to disappear, so the next publish re-uploads rather than skips), then the
artifacts are deleted, then the dropped definitions. Running gc again finishes the job.
gc must not run while a publish of the same pipeline is in flight: that publish may have
read the old index and would write back entries for objects gc deleted.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from stepflow import layout
from stepflow.compiler.publish import index_bytes, read_index
from stepflow.engine.state import TERMINAL_EXECUTION_STATUSES
from stepflow.errors import IntegrityError, StorageError, ValidationError
from stepflow.storage import NotFound, ObjectStore
from stepflow.storage.base import map_parallel

__all__ = ["GcReport", "collect_garbage"]

_TS = re.compile(r"^\d{4}-\d{2}-\d{2}-\d{2}-\d{2}-\d{2}-\d{3}$")
_DIGEST = re.compile(r"^sha256:([0-9a-f]{64})$")
_WORKERS = 16


@dataclass(frozen=True)
class GcReport:
    """What one collection kept and deleted (or, with ``dry_run``, would delete).

    ``deleted_objects``/``deleted_bytes`` count artifact files and definition files.
    ``kept_objects`` counts what remains under ``<pipeline>/`` outside execution folders:
    kept artifacts, the bootstrap channel and ``.stepflow/`` metadata.
    """

    kept_definitions: int
    deleted_definitions: int
    deleted_objects: int
    deleted_bytes: int
    kept_objects: int


@dataclass(frozen=True)
class _Definition:
    digest: str  # the hex part of sha256:<hex>
    folders: frozenset[tuple[str, str]]  # (step or sm_rf_user_ws, <ts>)

    @property
    def newest(self) -> str:
        return max((ts for _, ts in self.folders), default="")


def collect_garbage(store: ObjectStore, pipeline_name: str, *, keep: int = 5,
                    dry_run: bool = False) -> GcReport:
    """Delete the artifact folders and definitions of ``pipeline_name`` that nothing live references.

    Idempotent; with ``dry_run`` nothing is written or deleted and the report is the same
    as the real run's would be.
    """
    if not isinstance(keep, int) or isinstance(keep, bool) or keep < 1:
        raise ValidationError(
            f"keep={keep!r}: gc must keep at least the newest definition. Pass keep=1 or more "
            "(--keep N on the command line).", reason="InvalidArgument")
    index = read_index(store, pipeline_name)  # also rejects a name that is not one folder
    prefix = layout.in_pipeline(pipeline_name)
    sizes = {info.key: info.size for info in store.list(prefix)}
    if not sizes:
        raise StorageError(
            f"Nothing is stored under {store.uri(pipeline_name)}: check the pipeline name and the "
            "store (--store URI or STEPFLOW_S3_ROOT_URI).", reason="PipelineNotFound")
    defs_prefix = layout.in_pipeline(pipeline_name, layout.definitions_prefix())
    present_defs = {key[len(defs_prefix):-len(".json")] for key in sizes
                    if key.startswith(defs_prefix) and key.endswith(".json")}

    executions = _executions(store, pipeline_name, sizes)
    running = {digest for digest, status in executions.values()
               if status not in TERMINAL_EXECUTION_STATUSES}
    recorded = {digest for digest, _ in executions.values()}
    current = _current_digest(store, pipeline_name)

    published = {key[len(defs_prefix):-len(".json")] for key in index
                 if key.startswith(defs_prefix) and key.endswith(".json")} & present_defs
    required = ({current} if current else set()) | running
    definitions = _read_definitions(store, pipeline_name, published | required, required)

    ranked = sorted(published, key=lambda d: (definitions[d].newest, d), reverse=True)
    live = set(ranked[:keep]) | required
    referenced = set().union(*(definitions[d].folders for d in live)) if live else set()

    folders = {key: _artifact_folder(key, executions) for key in sizes}
    doomed_artifacts = [key for key, folder in folders.items()
                        if folder is not None and folder not in referenced]
    doomed_defs = sorted(present_defs - live - recorded)
    doomed = set(doomed_artifacts) | {f"{defs_prefix}{d}.json" for d in doomed_defs}

    remaining = {key for key in sizes if key not in doomed}
    unlisted = {f"{defs_prefix}{d}.json" for d in present_defs - live}
    pruned = {key: sha for key, sha in index.items() if key in remaining and key not in unlisted}
    if not dry_run:
        if pruned != index:
            store.put_bytes(layout.in_pipeline(pipeline_name, layout.index_key()),
                            index_bytes(pipeline_name, pruned))
        map_parallel(store.delete, sorted(doomed_artifacts), _WORKERS)
        map_parallel(store.delete, [f"{defs_prefix}{d}.json" for d in doomed_defs], _WORKERS)

    return GcReport(
        kept_definitions=len(live),
        deleted_definitions=len(doomed_defs),
        deleted_objects=len(doomed),
        deleted_bytes=sum(sizes[key] for key in doomed),
        kept_objects=sum(1 for key in remaining if key.split("/")[1] not in executions),
    )


def _current_digest(store: ObjectStore, pipeline_name: str) -> str | None:
    """The hex digest the backend record points at; None before the first upsert."""
    key = layout.in_pipeline(pipeline_name, layout.pipeline_record_key())
    try:
        record = json.loads(store.get_bytes(key))
        return _hex(record["DefinitionDigest"])
    except NotFound:
        return None
    except (ValueError, KeyError, TypeError, AttributeError):
        raise IntegrityError(
            f"{store.uri(key)} is not a pipeline record with a DefinitionDigest, so gc cannot tell "
            "which definition is current. Upsert the pipeline again (`stepflow run` or "
            "Pipeline.upsert()) to rewrite it, then run gc.", reason="UnreadableRecord") from None


def _hex(digest: Any) -> str:
    """``<hex>`` of ``sha256:<hex>``; ValueError for anything else."""
    match = _DIGEST.match(digest) if isinstance(digest, str) else None
    if not match:
        raise ValueError(f"{digest!r} is not a sha256:<hex> digest")
    return match.group(1)


def _executions(store: ObjectStore, pipeline_name: str,
                sizes: dict[str, int]) -> dict[str, tuple[str, str | None]]:
    """Execution id → (definition hex digest, status or None when unknown).

    An execution folder is one holding ``meta.json`` (written first by the backend). The
    status comes from its summary, else its ``execution.json``; unknown counts as running.
    """
    prefix = layout.in_pipeline(pipeline_name)
    relative = [key[len(prefix):] for key in sizes]
    ids = sorted({rel.split("/")[0] for rel in relative
                  if rel == layout.execution_meta_key(rel.split("/")[0])
                  and rel.split("/")[0] != layout.META})

    def read(execution_id: str) -> tuple[str, tuple[str, str | None]]:
        meta_key = layout.in_pipeline(pipeline_name, layout.execution_meta_key(execution_id))
        try:
            digest = _hex(json.loads(store.get_bytes(meta_key))["definitionDigest"])
        except (NotFound, ValueError, KeyError, TypeError, AttributeError):
            raise IntegrityError(
                f"{store.uri(meta_key)} does not say which definition execution {execution_id} "
                "runs, so gc cannot tell whether deleting artifacts would break it. Restore the "
                "file or remove the execution's folder, then run gc.",
                reason="UnreadableRecord") from None
        status = None
        for key in (layout.in_pipeline(pipeline_name, layout.execution_summary_key(execution_id)),
                    layout.in_pipeline(pipeline_name, layout.execution_state_key(execution_id))):
            try:
                data = json.loads(store.get_bytes(key))
                status = data.get("PipelineExecutionStatus", data.get("status"))
            except (NotFound, ValueError, AttributeError):
                continue
            if status in TERMINAL_EXECUTION_STATUSES:
                break
        return execution_id, (digest, status)

    return dict(map_parallel(read, ids, _WORKERS))


def _read_definitions(store: ObjectStore, pipeline_name: str, digests: set[str],
                      required: set[str]) -> dict[str, _Definition]:
    def read(digest: str) -> _Definition:
        key = layout.in_pipeline(pipeline_name, f"{layout.definitions_prefix()}{digest}.json")
        try:
            return _Definition(digest, frozenset(_folders(json.loads(store.get_bytes(key)), pipeline_name)))
        except NotFound:
            why = "is missing"
        except (ValueError, KeyError, TypeError, AttributeError):
            why = "is not a pipeline definition"
        used = "the current definition or one an unfinished execution runs" if digest in required \
            else "a published definition"
        raise StorageError(
            f"{store.uri(key)} {why}; it is {used}, so gc cannot tell which artifacts it needs "
            "and deletes nothing. Publish the pipeline again (or stop the execution that uses it), "
            "then run gc.", reason="UnreadableDefinition")

    return {d.digest: d for d in map_parallel(read, sorted(digests), _WORKERS)}


def _folders(definition: dict[str, Any], pipeline_name: str) -> Iterator[tuple[str, str]]:
    """The ``(folder, <ts>)`` pairs a definition reads.

    A @step names its folder by ``--func_step_s3_dir`` alone; everything else (workspace
    channels, dependency channels, a processing step's shipped code) is a URI in the step's
    request. Every string of the request is scanned for ``/<pipeline>/<folder>/<ts>``
    rather than the fields known today, so a new step type cannot lose its artifacts: a
    false match only keeps more.
    """
    uri = re.compile(rf"/{re.escape(pipeline_name)}/([^/]+)/({_TS.pattern[1:-1]})(?:/|$)")
    for step in _steps(definition["Steps"]):
        if step.get("Type") == "Training":
            args = step["Arguments"]["AlgorithmSpecification"]["ContainerArguments"]
            options = {args[i]: args[i + 1] for i in range(len(args) - 1) if isinstance(args[i], str)}
            if isinstance(options.get("--func_step_s3_dir"), str):
                yield options.get("--pipeline_step_name", step["Name"]), options["--func_step_s3_dir"]
        for text in _strings(step.get("Arguments")):
            for match in uri.finditer(text):
                yield match.group(1), match.group(2)


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _steps(steps: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for step in steps:
        yield step
        if step.get("Type") == "Condition":
            yield from _steps(step["Arguments"].get("IfSteps", []))
            yield from _steps(step["Arguments"].get("ElseSteps", []))


def _artifact_folder(key: str, executions: dict[str, Any]) -> tuple[str, str] | None:
    """``(folder, <ts>)`` for a key under an artifact folder, None for anything gc never deletes."""
    parts = key.split("/")
    if len(parts) < 4 or parts[1] in (layout.META, layout.BOOTSTRAP_CHANNEL) \
            or parts[1] in executions or not _TS.match(parts[2]):
        return None
    return parts[1], parts[2]
