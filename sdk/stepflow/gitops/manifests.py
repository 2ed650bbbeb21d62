"""``Pipeline`` manifests on disk, for ``stepflow up``: found, parsed and checked.

The files are the same YAML a user would ``kubectl apply``; the API server is not there to
refuse a bad one, so this module does its structural checks (kind, name, known spec
fields) and :meth:`PipelineSpec.from_manifest` the semantic ones. A bad document becomes a
:class:`ManifestProblem` (one line: file, document, field, what to do); it never stops the
good ones in the same folder or even the same file.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from stepflow.errors import StepflowError
from stepflow.gitops.spec import PipelineSpec

API_VERSION = "stepflow.dev/v1alpha1"
KIND = "Pipeline"
_GROUP = API_VERSION.partition("/")[0]

#: The CRD's spec fields (crds/pipelines.stepflow.dev.yaml); the API server would prune
#: anything else silently, so a typo here would quietly mean "use the default".
_SPEC_FIELDS: dict[str, Any] = {
    "source": {"url": None, "ref": {"branch": None, "tag": None, "commit": None},
               "secretRef": {"name": None}, "interval": None, "timeout": None},
    "module": None, "pipeline": None, "s3RootUri": None, "backend": None,
    "trigger": {"onChange": None, "schedule": None, "parameters": None},
    "suspend": None, "historyLimit": None,
    "build": {"requirements": None, "timeout": None, "memoryLimit": None},
}
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class Manifest:
    """One valid ``Pipeline`` document."""

    name: str
    spec: Mapping[str, Any]
    parsed: PipelineSpec
    path: Path
    document: int  # 1-based, for messages about multi-document files

    @property
    def where(self) -> str:
        return f"{self.path}" if self.document == 1 else f"{self.path} (document {self.document})"

    @property
    def spec_digest(self) -> str:
        """Changes exactly when the spec does: ``stepflow up``'s stand-in for metadata.generation."""
        text = json.dumps(self.spec, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class ManifestProblem:
    """A document that cannot be used; ``name`` when it got as far as having one."""

    path: Path
    document: int
    message: str
    reason: str = "InvalidManifest"
    name: str | None = None

    def __str__(self) -> str:
        where = f"{self.path}" if self.document == 1 else f"{self.path} (document {self.document})"
        return f"{where}: {self.message}"


def manifest_files(directory: Path) -> list[Path]:
    """``*.yaml``/``*.yml`` under ``directory`` (recursively, sorted), or the file itself."""
    if directory.is_file():
        return [directory]
    return sorted(p for p in directory.rglob("*") if p.suffix in _SUFFIXES and p.is_file()
                  and not any(part.startswith(".") for part in p.relative_to(directory).parts))


def discover(directory: str | Path) -> tuple[list[Manifest], list[ManifestProblem]]:
    """Every ``Pipeline`` under ``directory``; other kinds are ignored, bad ones reported.

    Names must be unique: the name keys the pipeline's state, so the second document with a
    name already taken is a problem, not a silent override.
    """
    directory = Path(directory)
    manifests: list[Manifest] = []
    problems: list[ManifestProblem] = []
    if not directory.exists():
        problems.append(ManifestProblem(directory, 1, "does not exist; pass the folder holding your "
                                        "Pipeline manifests (stepflow up DIR)", reason="NotFound"))
        return manifests, problems
    seen: dict[str, Manifest] = {}
    for path in manifest_files(directory):
        for item in _load_file(path):
            if isinstance(item, ManifestProblem):
                problems.append(item)
            elif item.name in seen:
                problems.append(ManifestProblem(
                    path, item.document, f"metadata.name {item.name!r} is already used by "
                    f"{seen[item.name].where}; give each Pipeline its own name", name=None))
            else:
                seen[item.name] = item
                manifests.append(item)
    return manifests, problems


def _load_file(path: Path) -> list[Manifest | ManifestProblem]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return [ManifestProblem(path, 1, f"cannot be read ({exc})")]
    try:
        documents = list(yaml.safe_load_all(text))
    except yaml.YAMLError as exc:
        if _GROUP not in text:
            return []  # a Helm template or any other YAML of the repository: not ours to judge
        mark = getattr(exc, "problem_mark", None)
        line = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        return [ManifestProblem(path, 1, f"is not valid YAML{line}: {problem}")]
    out: list[Manifest | ManifestProblem] = []
    for number, document in enumerate(documents, start=1):
        # Other resources live next to pipelines, as in any GitOps folder, and other tools
        # have a kind Pipeline too (Tekton, Azure): only our API group is ours to judge.
        if not isinstance(document, dict) or document.get("kind") != KIND:
            continue
        if str(document.get("apiVersion", "")).partition("/")[0] != _GROUP:
            continue
        out.append(_check_document(path, number, document))
    return out


def _check_document(path: Path, number: int, document: Mapping[str, Any]) -> Manifest | ManifestProblem:
    def problem(message: str, reason: str = "InvalidManifest", name: str | None = None) -> ManifestProblem:
        return ManifestProblem(path, number, message, reason, name)

    if document.get("apiVersion") != API_VERSION:
        return problem(f"apiVersion is {document.get('apiVersion')!r}; a Pipeline is {API_VERSION!r}")
    metadata = document.get("metadata") or {}
    name = metadata.get("name") if isinstance(metadata, dict) else None
    if not isinstance(name, str) or not _NAME.match(name) or len(name) > 253:
        return problem(f"metadata.name {name!r} is not a valid name; use lower-case letters, digits "
                       "and '-', e.g. `metadata: {name: churn}`")
    spec = document.get("spec")
    if not isinstance(spec, dict):
        return problem("spec is missing or not a mapping; a Pipeline needs at least spec.source.url and "
                       "spec.module", name=name)
    unknown = _unknown_field(spec, _SPEC_FIELDS, "spec")
    if unknown:
        return problem(unknown, name=name)
    try:
        parsed = PipelineSpec.from_manifest(spec, name=name, namespace=metadata.get("namespace"),
                                            base_dir=path.parent)
    except StepflowError as exc:
        return problem(exc.message, reason=exc.reason, name=name)
    return Manifest(name=name, spec=spec, parsed=parsed, path=path, document=number)


def _unknown_field(value: Mapping[str, Any], schema: Mapping[str, Any], where: str) -> str | None:
    for key, sub in value.items():
        field = f"{where}.{key}"
        if key not in schema:
            close = difflib.get_close_matches(str(key), list(schema), n=1)
            hint = f"did you mean {where}.{close[0]}?" if close else f"known fields: {', '.join(schema)}"
            return f"{field} is not a Pipeline field; {hint}"
        if isinstance(schema[key], dict):
            if sub is None:
                continue
            if not isinstance(sub, dict):
                return f"{field} must be a mapping (fields: {', '.join(schema[key])})"
            found = _unknown_field(sub, schema[key], field)
            if found:
                return found
    return None
