"""The trusted part's side of an attempt: artifacts in (verified), outputs out (signed).

Everything here reads or writes the store and holds the integrity key; none of it unpickles
anything (unpickling runs code: the user part does it). See ``stepflow.runtime.handoff``
for the folder both parts share.
"""

from __future__ import annotations

import zipfile
from collections.abc import Mapping
from io import BytesIO
from pathlib import Path

from stepflow import layout
from stepflow.runtime import handoff
from stepflow.runtime.arguments import StepInvocation
from stepflow.runtime.environment import EnvironmentError_
from stepflow.serialization import sign, verify
from stepflow.storage import NotFound, ObjectStore, open_store


def stage(inv: StepInvocation, store: ObjectStore, key: bytes | None, attempt: Path) -> None:
    """Fill the attempt folder: workspace, verified payloads, the invocation.

    Raises ``StorageError`` (the store failed), ``EnvironmentError_`` (a bad workspace) and
    ``DeserializationError``/``IntegrityError`` (an artifact that does not verify).
    """
    handoff.make(attempt)
    _workspace(store, inv.step_name, inv.func_step_s3_dir, attempt / handoff.WORKSPACE)
    inputs = attempt / handoff.INPUTS
    for name, prefix in ((handoff.FUNCTION, layout.function_prefix(inv.step_name, inv.func_step_s3_dir)),
                         (handoff.ARGUMENTS, layout.arguments_prefix(inv.step_name, inv.func_step_s3_dir))):
        (inputs / name).write_bytes(_verified(store, prefix, key))
    upstream: dict[str, str] = {}
    for uri in _upstream_uris(inv.property_references):
        parent, prefix = uri.rsplit("/", 1)
        try:
            payload = _verified(open_store(parent), prefix, key)
        except NotFound:
            continue  # the user part says which argument lacks it, if one needs it
        name = f"upstream-{len(upstream)}.pkl"
        (inputs / name).write_bytes(payload)
        upstream[uri] = f"{handoff.INPUTS}/{name}"
    handoff.Invocation(step_name=inv.step_name, dependency_file=inv.dependency_file,
                       property_references=dict(inv.property_references),
                       serialize_output_to_json=inv.serialize_output_to_json,
                       client_python_version=inv.client_python_version, upstream=upstream).write(attempt)


def signed_output(attempt: Path, payload_name: str, metadata_name: str,
                  key: bytes | None) -> tuple[bytes, bytes] | None:
    """An artifact the user part wrote, checked and signed with the key; None if absent.

    The user part pickles without the key and records plain SHA-256; this is the same
    re-signing a build's bundle gets (``serialization.sign``).
    """
    payload = handoff.read_output(attempt, payload_name)
    metadata = handoff.read_output(attempt, metadata_name)
    if payload is None or metadata is None:
        return None
    if key is None:
        verify(payload, metadata)
        return payload, metadata
    return payload, sign(payload, metadata, key=key)


def _verified(store: ObjectStore, prefix: str, key: bytes | None) -> bytes:
    payload = store.get_bytes(layout.payload_key(prefix))
    verify(payload, store.get_bytes(layout.metadata_key(prefix)), key=key)
    return payload


def _upstream_uris(refs: Mapping[str, str]) -> list[str]:
    """The values of step references that name another step's results folder."""
    return sorted({v for k, v in refs.items() if k.startswith("Steps.") and "://" in v})


def _workspace(store: ObjectStore, step: str, ts: str, workdir: Path) -> None:
    """Unpack the workspace and the step's pre-exec/dependency files into ``workdir``."""
    zipped = layout.workspace_key(ts)
    if store.head(zipped) is not None:
        with zipfile.ZipFile(BytesIO(store.get_bytes(zipped))) as archive:
            _safe_extract(archive, workdir)
    workspace = workdir / layout.WORKSPACE_ROOT
    workspace.mkdir(parents=True, exist_ok=True)
    channel = layout.dependencies_prefix(step, ts) + "/"
    for info in store.list(channel):
        name = info.key[len(channel):]
        if name and "/" not in name:
            (workspace / name).write_bytes(store.get_bytes(info.key))


def _safe_extract(archive: zipfile.ZipFile, dest: Path) -> None:
    root = dest.resolve()
    for member in archive.infolist():
        target = (root / member.filename).resolve()
        if root not in target.parents and target != root:
            raise EnvironmentError_(
                f"The workspace archive contains {member.filename!r}, which points outside "
                "the workspace; it was refused. Rebuild the pipeline's workspace."
            )
    archive.extractall(root)
