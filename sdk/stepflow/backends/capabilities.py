"""Which backend runs which kind of step, and reports which job properties, checked when a
definition is recorded.

A step's kind is what it takes to run it: an ``@step`` function (the stepflow runtime, in
any Python), a container job (a classic Processing step: the image's own command, with
SageMaker's processing contract), a training job on its own image (SageMaker's training
contract: channels, hyperparameters, the model archive), a SageMaker resource, or nothing
but the engine (Condition, Fail). A backend refuses at upsert, with
the step's name and the backends that can run it, a definition holding a kind it cannot
run, or reading a property of a step's job that it does not report: a user error found at
publish, not a failed execution later.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from stepflow.backends.job_descriptions import REPORTED
from stepflow.compiler.definition import ENTRYPOINT
from stepflow.errors import USER, BackendError

FUNCTION = "function"
CONTAINER = "container"
TRAINING = "training"
SERVICE = "service"
ENGINE = "engine"

#: The kinds each backend runs. ``local`` runs @step functions as processes here;
#: ``kubernetes`` (pods) also runs processing containers (not yet SageMaker's training
#: contract); ``sagemaker`` also training images and SageMaker's own resources (models,
#: transform jobs).
BACKEND_KINDS: dict[str, frozenset[str]] = {
    "local": frozenset({FUNCTION, ENGINE}),
    "kubernetes": frozenset({FUNCTION, CONTAINER, ENGINE}),
    "sagemaker": frozenset({FUNCTION, CONTAINER, TRAINING, SERVICE, ENGINE}),
}

#: The job properties (``ProcessingJobStatus``, ``TrainingJobName``,
#: ``ModelArtifacts.S3ModelArtifacts``, ...) each backend reports to the expressions that
#: read them, by step type. SageMaker's jobs report every property of their description
#: (``None``); the backends stepflow's engine runs describe each attempt's job themselves
#: (``backends.job_descriptions``). A backend absent here reports none.
REPORTS_JOB_PROPERTIES: dict[str, Mapping[str, frozenset[str]] | None] = {
    "local": REPORTED,
    "kubernetes": REPORTED,
    "sagemaker": None,
}

_DESCRIPTIONS = {CONTAINER: "runs its own container image", FUNCTION: "is a @step function",
                 TRAINING: "is a training job on its own image (SageMaker's training contract)",
                 SERVICE: "creates a SageMaker resource (a model or a transform job)"}


def step_kind(step_type: str, arguments: Mapping[str, Any]) -> str:
    """``function`` for a compiled @step (a Training job whose entrypoint is the job
    driver), ``training`` for other Training steps, ``container`` for Processing steps,
    ``service`` for Model and Transform steps, ``engine`` otherwise."""
    if step_type == "Training":
        entrypoint = (arguments.get("AlgorithmSpecification") or {}).get("ContainerEntrypoint")
        return FUNCTION if entrypoint == ENTRYPOINT else TRAINING
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
    _check_job_properties(pipeline_name, definition, backend)


def reports(backend: str, step_type: str, prop: str) -> bool:
    """Whether ``backend`` reports property ``prop`` of a ``step_type`` step's job."""
    if backend not in REPORTS_JOB_PROPERTIES:
        return False
    reported = REPORTS_JOB_PROPERTIES[backend]
    return reported is None or prop in reported.get(step_type, frozenset())


def _check_job_properties(pipeline_name: str, definition: Mapping[str, Any], backend: str) -> None:
    """A read of a property a job reports while it runs is legal SageMaker, but only a
    backend that reports it can resolve it: refuse it here, not in the middle of a run."""
    from stepflow.engine import Plan
    from stepflow.engine.paths import parse_path

    plan = Plan.from_definition(definition)
    refused = []
    for reader, step, path in plan.job_property_reads:
        step_type, prop = plan.step(step).type, str(parse_path(path)[0])
        if reports(backend, step_type, prop):
            continue
        reported = sorted((REPORTS_JOB_PROPERTIES.get(backend) or {}).get(step_type, ()))
        able = [b for b in REPORTS_JOB_PROPERTIES if reports(b, step_type, prop)]
        refused.append(f"step '{reader}' reads Steps.{step}.{path}, a property of the job which the {backend} "
                       f"backend does not report (of a {step_type} step's job it reports: "
                       f"{', '.join(reported) or 'nothing'}); backends that do: {', '.join(able) or 'none'}")
    if refused:
        raise BackendError(
            f"Pipeline '{pipeline_name}': {'; '.join(refused)}. Read a property the step's definition sets "
            "(e.g. an output's S3Uri) or one the backend reports, or choose one of those backends.",
            reason="PropertyNotAvailable", kind=USER)


def _steps(steps: list[Mapping[str, Any]]) -> Iterator[Mapping[str, Any]]:
    """Every step, condition branches included (checked before the engine reads the plan,
    so this message comes first)."""
    for step in steps:
        yield step
        if step.get("Type") == "Condition":
            arguments = step.get("Arguments") or {}
            yield from _steps(list(arguments.get("IfSteps") or []) + list(arguments.get("ElseSteps") or []))
