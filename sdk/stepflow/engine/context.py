"""The evaluation context of a running execution, and the job arguments it produces."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from stepflow.timefmt import millis

from .expressions import Context, resolve, to_text
from .plan import CONTAINER_ARGUMENTS, Plan
from .state import ExecutionState


def execution_context(plan: Plan, state: ExecutionState, documents: Mapping[str, Any] | None,
                      now: datetime, jobs: Mapping[str, str] | None = None) -> Context:
    """What expressions of this execution can read at ``now``.

    ``PipelineArn`` and ``PipelineExecutionArn`` exist only when the backend set them on
    the state; reading them otherwise fails the step with a message saying so. ``jobs``
    maps a step to the URI of its latest job's description (``Context.jobs``).
    """
    execution = {
        "PipelineName": state.pipeline_name,
        "PipelineExecutionId": state.execution_id,
        "StartDateTime": millis(state.started_at),
        "CurrentDateTime": millis(now),
    }
    if state.pipeline_arn is not None:
        execution["PipelineArn"] = state.pipeline_arn
    if state.execution_arn is not None:
        execution["PipelineExecutionArn"] = state.execution_arn
    return Context(
        parameters=state.parameters,
        execution=execution,
        steps={name: step.definition for name, step in plan.steps.items()},
        documents=documents or {},
        condition_outcomes={name: s.condition_outcome for name, s in state.steps.items()
                            if s.condition_outcome is not None},
        sources={name: s.reused_from for name, s in state.steps.items() if s.reused_from is not None},
        jobs=jobs or {},
    )


def resolve_container_arguments(plan: Plan, step_name: str, context: Context) -> list[str]:
    """The step's ContainerArguments with every expression evaluated to a string: what a
    launcher passes to the step's process, as SageMaker's service does before it starts a
    training job. Raises ``DocumentsNeeded`` or ``ExpressionError`` like :func:`evaluate`.
    """
    step = plan.step(step_name)
    location = CONTAINER_ARGUMENTS.get(step.type)
    if location is None:
        raise ValueError(f"step {step_name!r} is a {step.type} step; it has no container arguments")
    section = step.arguments.get(location[0]) or {}
    raw = section.get(location[1]) or []
    return [to_text(value) for value in resolve(raw, context)]


def resolve_container_environment(plan: Plan, step_name: str, context: Context) -> dict[str, str]:
    """The step's declared ``Environment`` with every expression evaluated to a string: the
    variables its container (its user code) gets. Raises like :func:`evaluate`."""
    raw = plan.step(step_name).arguments.get("Environment") or {}
    return {str(name): to_text(value) for name, value in resolve(dict(raw), context).items()}
