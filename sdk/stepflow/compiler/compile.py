"""``compile_pipeline``: graph → validation → artifacts → definition → bundle folder.

Data flows one way: the pipeline object and everything the compiler needs to know about
the session (store root, integrity key, region, @step defaults) come in as arguments, and
a bundle comes out. Nothing is written into the pipeline or its steps; their automatic
names live in the graph and are made visible to rendering and pickling by
``graph.names.active()``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from importlib.resources import files as package_files
from typing import TYPE_CHECKING, Any

from stepflow import layout
from stepflow.compiler.artifacts import StepArtifacts, step_artifacts
from stepflow.compiler.bundle import Bundle, scratch_dir
from stepflow.compiler.definition import Renderer, encode, resolve_settings
from stepflow.compiler.graph import PipelineGraph, build_graph
from stepflow.compiler.local_imports import check_local_imports
from stepflow.compiler.runtime_wheel import runtime_wheel_artifact
from stepflow.compiler.timestamps import PreviousFolders, build_timestamp, content_digest
from stepflow.compiler.validate import check_runnable, validate
from stepflow.compiler.workspace import workspace_zip
from stepflow.serialization import sign
from stepflow.workflow.callsite import project_root
from stepflow.workflow.defaults import default_region
from stepflow.workflow.function_step import FunctionStep

if TYPE_CHECKING:
    from stepflow.workflow.pipeline import Pipeline


WORKSPACE_DIGEST = "workspace.sha256"
"""Kept in a workspace step's folder: the digest of the workspace zip it runs with."""


def stepflow_version() -> str:
    from stepflow import __version__

    return __version__


def job_driver() -> bytes:
    return (package_files("stepflow.compiler") / "bootstrap" / "job_driver.sh").read_bytes()


def compile_pipeline(pipeline: Pipeline, *, s3_root_uri: str, out_dir: str | None = None,
                     previous_index: Mapping[str, str] | None = None,
                     integrity_key: bytes | None = None, region: str | None = None,
                     remote_function_defaults: Mapping[str, Any] | None = None) -> Bundle:
    """Compile to a bundle folder (a new temp dir when ``out_dir`` is None).

    Pure apart from writing the folder: nothing is uploaded. ``previous_index`` (published
    key → sha256) lets unchanged steps keep their ``<ts>`` folder. ``region`` and
    ``remote_function_defaults`` (the configured @step defaults) are a session's; None
    means what a default session has: the default region, the configured defaults
    (``Session.compile`` passes its own).
    """
    graph = build_graph(pipeline)
    with graph.names.active(settle=True):
        validate(pipeline, graph)
        return _compile(pipeline, graph, s3_root_uri=s3_root_uri, out_dir=out_dir,
                        previous_index=previous_index, integrity_key=integrity_key,
                        region=region or default_region(),
                        config=dict(remote_function_defaults
                                    if remote_function_defaults is not None
                                    else _configured_defaults()))


def _configured_defaults() -> dict[str, Any]:
    from stepflow.config import load_config

    return dict(load_config().remote_function or {})


def _compile(pipeline: Pipeline, graph: PipelineGraph, *, s3_root_uri: str,
             out_dir: str | None, previous_index: Mapping[str, str] | None,
             integrity_key: bytes | None, region: str, config: dict[str, Any]) -> Bundle:
    root = project_root()
    now = build_timestamp()
    previous = PreviousFolders(previous_index)
    name = pipeline.name
    s3_base = f"{s3_root_uri.rstrip('/')}/{name}"

    files: dict[str, bytes] = {}

    def place(step_name: str, content: dict[str, bytes]) -> str:
        prefix = layout.in_pipeline(name, step_name)
        digest = content_digest({rel: hashlib.sha256(d).hexdigest() for rel, d in content.items()})
        ts = previous.reuse(prefix, digest) or previous.fresh(prefix, now)
        folder = layout.in_pipeline(name, layout.step_folder(step_name, ts))
        for rel, data in content.items():
            files[f"{folder}/{rel}"] = data
        return ts

    settings: dict[int, dict[str, Any]] = {}
    artifacts: dict[int, StepArtifacts] = {}
    step_ts: dict[int, str] = {}
    workspace_filter: Any = None
    wants_workspace = False
    for step in graph.steps:
        if isinstance(step, FunctionStep):
            settings[id(step)] = resolve_settings(step, config)
            check_local_imports(step, graph.name_of(step), settings[id(step)]["include_local_workdir"], root)
            wants_workspace |= settings[id(step)]["include_local_workdir"]
            workspace_filter = workspace_filter or settings[id(step)]["custom_file_filter"]
    # SageMaker's bootstrap unpacks the workspace from the channel named after the step's
    # own <ts>, so the zip sits under every <ts> a workspace step uses. The step folder
    # records the zip's digest, so a new workspace means a new <ts>: a published folder is
    # never rewritten.
    workspace = workspace_zip(root, workspace_filter) if wants_workspace else None
    for step in graph.steps:
        artifacts[id(step)] = step_artifacts(step, settings.get(id(step), {}), root,
                                             integrity_key)
        content = dict(artifacts[id(step)].files)
        step_workspace = workspace if settings.get(id(step), {}).get(
            "include_local_workdir", False) else None
        if step_workspace is not None:
            content[WORKSPACE_DIGEST] = hashlib.sha256(step_workspace).hexdigest().encode()
        if content:
            step_ts[id(step)] = place(graph.name_of(step), content)
        if step_workspace is not None:
            files[layout.in_pipeline(name, layout.workspace_key(step_ts[id(step)]))] = step_workspace
    if settings:
        files[layout.in_pipeline(name, layout.job_driver_key())] = job_driver()
        wheel, wheel_metadata = runtime_wheel_artifact()
        if integrity_key is not None:  # a trusted compile signs at once, as it does the steps'
            wheel_metadata = sign(wheel, wheel_metadata, key=integrity_key)
        files[layout.in_pipeline(name, layout.payload_key(layout.runtime_wheel_prefix()))] = wheel
        files[layout.in_pipeline(name, layout.metadata_key(layout.runtime_wheel_prefix()))] = wheel_metadata

    renderer = Renderer(pipeline, graph, s3_base, step_ts, artifacts, settings,
                        region, stepflow_version())
    definition = renderer.definition()
    check_runnable(definition, graph)
    definition_bytes = encode(definition)
    return Bundle.write(out_dir or scratch_dir(),
                        pipeline_name=name, definition_bytes=definition_bytes, files=files,
                        step_count=len(graph.steps))
