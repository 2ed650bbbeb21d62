"""Which backend runs which kind of step, checked when a definition is recorded.

A step's kind is what it takes to run it: an ``@step`` function (the stepflow runtime, in
any Python), a container job (a classic Processing or Training step: the image's own
entrypoint), or nothing but the engine (Condition, Fail). A backend refuses at upsert, with
the step's name and the backends that can run it, a definition holding a kind it cannot
run: a user error found at publish, not a failed execution later.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from stepflow.compiler.definition import ENTRYPOINT
from stepflow.errors import USER, BackendError

FUNCTION = "function"
CONTAINER = "container"
SERVICE = "service"
ENGINE = "engine"

#: The kinds each backend runs. ``local`` runs @step functions as processes here;
#: ``kubernetes`` (pods) also runs containers; ``sagemaker`` also SageMaker's own
#: resources (models, transform jobs).
BACKEND_KINDS: dict[str, frozenset[str]] = {
    "local": frozenset({FUNCTION, ENGINE}),
    "kubernetes": frozenset({FUNCTION, CONTAINER, ENGINE}),
    "sagemaker": frozenset({FUNCTION, CONTAINER, SERVICE, ENGINE}),
}

#: The backends whose steps' jobs report their properties (``ProcessingJobStatus``,
#: ``ModelArtifacts.S3ModelArtifacts``, ...) to the expressions that read them.
REPORTS_JOB_PROPERTIES = frozenset({"sagemaker"})

_DESCRIPTIONS = {CONTAINER: "runs its own container image", FUNCTION: "is a @step function",
                 SERVICE: "creates a SageMaker resource (a model or a transform job)"}


def step_kind(step_type: str, arguments: Mapping[str, Any]) -> str:
    """``function`` for a compiled @step (a Training job whose entrypoint is the job
    driver), ``container`` for other Processing and Training steps, ``service`` for
    Model and Transform steps, ``engine`` otherwise."""
    if step_type == "Training":
        entrypoint = (arguments.get("AlgorithmSpecification") or {}).get("ContainerEntrypoint")
        return FUNCTION if entrypoint == ENTRYPOINT else CONTAINER
    if step_type == "Processing":
        return CONTAINER
    if step_type in ("Model", "Transform"):
        return SERVICE
    return ENGINE


def check_runnable(pipeline_name: str, definition: Mapping[str, Any], backend: str) -> None:
    """Raise a user error naming every step ``backend`` cannot run."""
    runs = BACKEND_KINDS.get(backend)
    if runs is None:
        return
    refused = []
    for step in _steps(definition.get("Steps") or []):
        name, step_type = step.get("Name"), step.get("Type", "")
        kind = step_kind(step_type, step.get("Arguments") or {})
        if kind not in runs:
            able = [b for b, kinds in BACKEND_KINDS.items() if kind in kinds]
            refused.append(f"step '{name}' ({step_type}) {_DESCRIPTIONS.get(kind, kind)}, which "
                           f"the {backend} backend cannot run; backends that can: {', '.join(able)}")
    if refused:
        raise BackendError(
            f"Pipeline '{pipeline_name}': {'; '.join(refused)}. Choose one of those backends "
            "(spec.backend, or Session(backend=...)), or turn the step into a @step function.",
            reason="UnsupportedStepType", kind=USER)
    if backend not in REPORTS_JOB_PROPERTIES:
        _check_job_properties(pipeline_name, definition, backend)


def _check_job_properties(pipeline_name: str, definition: Mapping[str, Any], backend: str) -> None:
    """A read of a property a job reports while it runs is legal SageMaker, but only a
    backend that reports them can resolve it: refuse it here, not in the middle of a run."""
    from stepflow.engine import Plan

    reads = Plan.from_definition(definition).job_property_reads
    if reads:
        listed = "; ".join(f"step '{reader}' reads Steps.{step}.{path}" for reader, step, path in reads)
        raise BackendError(
            f"Pipeline '{pipeline_name}': {listed}: a property the job reports while it runs, which "
            f"the {backend} backend does not report; backends that do: "
            f"{', '.join(sorted(REPORTS_JOB_PROPERTIES))}. Read a property the step's definition "
            "sets (e.g. an output's S3Uri), or choose one of those backends.",
            reason="PropertyNotAvailable", kind=USER)


def _steps(steps: list[Mapping[str, Any]]) -> Iterator[Mapping[str, Any]]:
    """Every step, condition branches included (checked before the engine reads the plan,
    so this message comes first)."""
    for step in steps:
        yield step
        if step.get("Type") == "Condition":
            arguments = step.get("Arguments") or {}
            yield from _steps(list(arguments.get("IfSteps") or []) + list(arguments.get("ElseSteps") or []))
