"""An execution's state in the SageMaker API's shapes.

``describe_execution``/``list_steps`` callers (and code ported from ``sagemaker.workflow``)
read these; the operator mirrors the same facts onto Kubernetes status.
"""

from __future__ import annotations

from typing import Any

from stepflow.backends.job_descriptions import KINDS, job_arn
from stepflow.engine import ExecutionState, Plan, StepState
from stepflow.k8s_names import job_name


def describe_execution(state: ExecutionState, *, display_name: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "PipelineArn": state.pipeline_arn,
        "PipelineExecutionArn": state.execution_arn,
        "PipelineExecutionId": state.execution_id,
        "PipelineExecutionDisplayName": display_name or state.execution_id,
        "PipelineExecutionStatus": state.status,
        "StartTime": state.started_at,
        "CreationTime": state.started_at,
        "LastModifiedTime": state.ended_at or state.started_at,
        "Parameters": [{"Name": k, "Value": _text(v)} for k, v in state.parameters.items()],
    }
    if state.ended_at is not None:
        out["EndTime"] = state.ended_at
    if state.failure_reason:
        out["FailureReason"] = state.failure_reason
    return out

def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)

def step_view(step: StepState, step_type: str, state: ExecutionState) -> dict[str, Any]:
    out: dict[str, Any] = {"StepName": step.name, "StepType": step_type, "StepStatus": step.status,
                           "AttemptCount": len(step.attempts)}
    execution_arn = state.execution_arn
    if step.reused_from is not None:  # selective execution: the source's outcome, not run here
        source = step.reused_from
        if execution_arn is not None:
            source = f"{execution_arn.rsplit('/', 1)[0]}/{step.reused_from}"
        out["SelectiveExecutionResult"] = {"SourcePipelineExecutionArn": source}
    if step.started_at is not None:
        out["StartTime"] = step.started_at
    if step.ended_at is not None:
        out["EndTime"] = step.ended_at
    if step.failure_reason:
        out["FailureReason"] = step.failure_reason
    if step.skip_reason:
        out["SkipReason"] = step.skip_reason
    metadata: dict[str, Any] = {}
    if step_type == "Condition" and step.condition_outcome is not None:
        metadata["Condition"] = {"Outcome": "True" if step.condition_outcome else "False"}
    if step_type == "Fail" and step.failure_reason:
        metadata["Fail"] = {"ErrorMessage": step.failure_reason}
    if step_type in KINDS and step.attempts:  # the latest attempt's job (backends.job_descriptions)
        name = job_name(state.execution_id, step.name, step.attempts[-1].number)
        metadata[f"{KINDS[step_type].prefix}Job"] = {"Arn": job_arn(step_type, execution_arn, name)}
    out["Metadata"] = metadata
    return out

def list_steps(plan: Plan, state: ExecutionState) -> list[dict[str, Any]]:
    """ListPipelineExecutionSteps: the steps that started, newest first, as SageMaker lists
    them (a Pending step, or one Skipped because its branch was not taken, is absent).

    Steps started at the same instant (a condition and the fail step it reached) are
    listed later-in-the-plan first, the order in which the engine started them.
    """
    position = {name: i for i, name in enumerate(plan.order)}
    started = [s for s in state.steps.values() if s.started_at is not None]
    started.sort(key=lambda s: (s.started_at, position[s.name]), reverse=True)
    return [step_view(s, plan.step(s.name).type, state) for s in started]


def all_steps(plan: Plan, state: ExecutionState) -> list[dict[str, Any]]:
    """Every step in plan order, Pending and Skipped included (with ``SkipReason``): the
    CLI's view, which shows what has yet to run and why a step will not."""
    return [step_view(state.steps[name], plan.step(name).type, state) for name in plan.order]
