"""SageMaker's answers as the engine's :class:`ExecutionState`, so status is mapped once.

``gitops.execution_status`` derives the resources' status from an ``ExecutionState``
whatever the backend; this module builds one from DescribePipelineExecution and
ListPipelineExecutionSteps, with the definition's plan giving the step order and types.
SageMaker's statuses are the engine's words already (Executing, Stopping, Stopped, Failed,
Succeeded; steps add Starting). Steps SageMaker has not listed are Pending while the
execution runs; once it succeeded, a step it never ran was on a condition's other branch:
Skipped, as the local engine says.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from stepflow.engine import SKIPPED, SUCCEEDED, Attempt, ExecutionState, Plan, StepState
from stepflow.engine.state import ATTEMPT_STATUSES, EXECUTION_STATUSES, STEP_STATUSES

#: What a step that never ran says once its execution succeeded.
NOT_RUN = "not run: a condition step took the other branch"


def _utc(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.fromtimestamp(float(value), UTC)


def execution_id_of(execution_arn: str) -> str:
    """SageMaker's execution id: the last part of ``...:pipeline/<name>/execution/<id>``."""
    return execution_arn.rsplit("/", 1)[-1]


def step_state(summary: Mapping[str, Any], step_type: str) -> StepState:
    """One ListPipelineExecutionSteps entry (the newest, when a step was retried)."""
    status = summary.get("StepStatus") or "Executing"
    if status not in STEP_STATUSES:
        status = "Executing"  # a status newer than this code: running, until proven otherwise
    started, ended = _utc(summary.get("StartTime")), _utc(summary.get("EndTime"))
    attempts = int(summary.get("AttemptCount") or (1 if started else 0))
    step = StepState(name=summary["StepName"], type=step_type, status=status, started_at=started, ended_at=ended,
                     failure_reason=summary.get("FailureReason"))
    outcome = ((summary.get("Metadata") or {}).get("Condition") or {}).get("Outcome")
    if outcome is not None:
        step.condition_outcome = str(outcome).lower() == "true"
    # SageMaker reports a count, not the attempts: the earlier ones failed (it retried them).
    for number in range(1, attempts + 1):
        last = number == attempts
        step.attempts.append(Attempt(
            number=number, status=status if last and status in ATTEMPT_STATUSES else "Failed",
            started_at=started or datetime.now(UTC), ended_at=ended if last else started))
    return step


def execution_state(plan: Plan, described: Mapping[str, Any], listed: Sequence[Mapping[str, Any]], *,
                    execution_id: str, pipeline_name: str, parameters: Mapping[str, Any]) -> ExecutionState:
    """The state of one execution from SageMaker's answers (``listed``: every step summary)."""
    status = described.get("PipelineExecutionStatus") or "Executing"
    if status not in EXECUTION_STATUSES:
        status = "Executing"
    started = _utc(described.get("CreationTime")) or datetime.now(UTC)
    terminal_end = _utc(described.get("LastModifiedTime")) if status in ("Succeeded", "Failed", "Stopped") else None
    newest: dict[str, Mapping[str, Any]] = {}
    for summary in listed:  # newest first, as SageMaker lists them: keep the first seen
        newest.setdefault(summary["StepName"], summary)
    steps: dict[str, StepState] = {}
    for name in plan.order:
        step_type = plan.step(name).type
        if name in newest:
            steps[name] = step_state(newest[name], step_type)
        elif status == SUCCEEDED:
            steps[name] = StepState(name, step_type, status=SKIPPED, skip_reason=NOT_RUN)
        else:
            steps[name] = StepState(name, step_type)
    return ExecutionState(
        execution_id=execution_id, pipeline_name=pipeline_name, started_at=started, steps=steps,
        parameters=dict(parameters), status=status, ended_at=terminal_end,
        failure_reason=described.get("FailureReason"),
        parallelism=(described.get("ParallelismConfiguration") or {}).get("MaxParallelExecutionSteps"),
        pipeline_arn=described.get("PipelineArn"), execution_arn=described.get("PipelineExecutionArn"))


def step_metadata(listed: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """``step name -> Metadata`` as SageMaker reported it (training job ARNs and so on)."""
    out: dict[str, dict[str, Any]] = {}
    for summary in listed:
        out.setdefault(summary["StepName"], dict(summary.get("Metadata") or {}))
    return out
