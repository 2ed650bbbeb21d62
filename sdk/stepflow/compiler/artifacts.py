"""The files each step ships: pickled function and arguments, dependencies, scripts.

The function and arguments were pickled when the @step function was called
(:mod:`stepflow.workflow.capture`); here, inside the pipeline's ``names.active()`` scope,
their pipeline variables become placeholders naming the upstream steps, and everything is
signed. Any failure names the step, the setting and the user's line that created the step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stepflow import layout
from stepflow.compiler.sourcedir import sourcedir_archive
from stepflow.errors import ValidationError
from stepflow.serialization import SerializedArtifact, seal, serialize
from stepflow.workflow.entities import PipelineVariable
from stepflow.workflow.function_step import FunctionStep
from stepflow.workflow.placeholders import CapturedArguments
from stepflow.workflow.steps import ProcessingStep, Step, TrainingStep
from stepflow.workflow.training import SOURCEDIR_ARCHIVE


@dataclass
class StepArtifacts:
    """Files under ``<pipeline>/<step>/<ts>/`` by relative path, and the run-time references."""

    files: dict[str, bytes] = field(default_factory=dict)
    property_references: list[tuple[str, Any]] = field(default_factory=list)
    dependency_file: str | None = None


def _reference(value: Any) -> tuple[str, Any] | None:
    """The ``--property_references`` pair for a top-level pipeline-variable argument."""
    from stepflow.workflow.function_step import DelayedReturn

    if isinstance(value, DelayedReturn):
        key = value.output_path_reference
        return key, {"Std:Join": {"On": "", "Values": [{"Get": key}]}}
    if isinstance(value, PipelineVariable):
        return value.expr["Get"], value.to_string().expr
    return None


def function_step_artifacts(step: FunctionStep, settings: dict[str, Any], project_root: Path,
                            key: bytes | None) -> StepArtifacts:
    out = StepArtifacts()
    out.files.update(_serialized(layout.FUNCTION_FOLDER, _function_artifact(step, key)))
    out.files.update(_serialized(layout.ARGUMENTS_FOLDER, _arguments_artifact(step, key)))
    for _, value in step.arguments_by_name():
        reference = _reference(value)
        if reference is not None:
            out.property_references.append(reference)

    # A step without dependencies or pre-execution commands ships no channel at all (an
    # empty S3 channel would stop SageMaker from starting the job, and a placeholder file
    # per step would be a fifth of all uploads). stepflow itself comes from job_driver.sh.
    folder = layout.DEPENDENCIES_FOLDER
    dependencies = settings.get("dependencies")
    if dependencies:
        path = _project_file(dependencies, project_root, "dependencies", step)
        out.files[f"{folder}/{path.name}"] = path.read_bytes()  # shipped untouched
        out.dependency_file = path.name
    commands = settings.get("pre_execution_commands")
    script = settings.get("pre_execution_script")
    if commands and script:
        raise ValidationError(
            f"Step '{step.name}': only one of pre_execution_commands or pre_execution_script "
            "can be specified (decorator and configuration combined); drop one.",
            location=step.location)
    if commands:
        out.files[f"{folder}/{layout.PRE_EXEC_SCRIPT}"] = ("\n".join(commands) + "\n").encode()
    elif script:
        out.files[f"{folder}/{layout.PRE_EXEC_SCRIPT}"] = _project_file(
            script, project_root, "pre_execution_script", step).read_bytes()
    return out


def processing_step_artifacts(step: ProcessingStep, project_root: Path) -> StepArtifacts:
    out = StepArtifacts()
    if step.code_path is not None:
        path = _project_file(step.code_path, project_root, "code", step)
        out.files[f"{layout.CODE_FOLDER}/{path.name}"] = path.read_bytes()
    for _, name, path in step.local_inputs():
        out.files.update(_local_input(step, name, path))
    return out


def training_step_artifacts(step: TrainingStep) -> StepArtifacts:
    out = StepArtifacts()
    sources = step.source_files()
    for name, path in sources.items():
        if not path.is_file():
            raise ValidationError(
                f"Step '{step.name}': the script-mode file {name!r} ({path}) does not exist. "
                "entry_point is relative to source_dir when given, else to the project root.",
                location=step.location, reason="FileNotFound")
    if sources:
        out.files[f"{layout.CODE_FOLDER}/{SOURCEDIR_ARCHIVE}"] = sourcedir_archive(sources)
    for _, name, path in step.local_inputs():
        out.files.update(_local_input(step, name, path))
    return out


def _local_input(step: Step, name: str, path: Path) -> dict[str, bytes]:
    """A local input's files under ``input/<name>/``: shipped in the step's folder, so an
    unchanged input keeps its ``<ts>`` and costs nothing to publish again."""
    prefix = layout.input_prefix(name)
    if path.is_file():
        return {f"{prefix}/{path.name}": path.read_bytes()}
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file())
        if files:
            return {f"{prefix}/{p.relative_to(path).as_posix()}": p.read_bytes() for p in files}
        problem = "is an empty folder (a processing input needs at least one file)"
    else:
        problem = "is neither a file nor a folder"
    raise ValidationError(
        f"Step '{step.name}': input {name!r} source {str(path)!r} {problem}. Give a "
        "local path relative to the project root, an absolute path, or an s3:// URI.",
        location=step.location, reason="FileNotFound")


def step_artifacts(step: Step, settings: dict[str, Any], project_root: Path,
                   key: bytes | None) -> StepArtifacts:
    if isinstance(step, FunctionStep):
        return function_step_artifacts(step, settings, project_root, key)
    if isinstance(step, ProcessingStep):
        return processing_step_artifacts(step, project_root)
    if isinstance(step, TrainingStep):
        return training_step_artifacts(step)
    return StepArtifacts()


def _serialized(folder: str, artifact: SerializedArtifact) -> dict[str, bytes]:
    return {layout.payload_key(folder): artifact.payload,
            layout.metadata_key(folder): artifact.metadata}


def _project_file(name: str, project_root: Path, setting: str, step: Step) -> Path:
    path = Path(name)
    if not path.is_absolute():
        path = project_root / path
    if not path.is_file():
        raise ValidationError(
            f"Step '{step.name}': {setting}={name!r} is not a file (looked for {path}). "
            "Give a path relative to the project root or an absolute path.",
            location=step.location, reason="FileNotFound")
    return path


def _function_artifact(step: FunctionStep, key: bytes | None) -> SerializedArtifact:
    return seal(step.captured.function, key=key)


def _arguments_artifact(step: FunctionStep, key: bytes | None) -> SerializedArtifact:
    slots = tuple(variable.placeholder() for variable in step.captured.variables)
    return serialize(CapturedArguments(step.captured.arguments, slots), key=key)
