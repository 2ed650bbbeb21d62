"""Running part of a pipeline again, reusing what already succeeded.

Two ways, both SageMaker's:

* :func:`retry` (RetryPipelineExecution, ``argo retry``): a Failed or Stopped execution
  goes on in place. Every step that did not succeed is Pending again (its attempts are
  kept, so attempt numbers, records and logs never collide); the engine then re-derives
  which branches are skipped and runs the rest.
* :func:`select` (``SelectiveExecutionConfig``): a *new* execution runs only the selected
  steps. Each step they read from (directly or through other unselected steps) must have
  succeeded in the source execution and counts as succeeded here with the source's
  outcome; ``reused_from`` names the source, so reading its properties
  (``OutputDataConfig.S3OutputPath`` ...) evaluates with the source's execution id and
  finds the source's results, as SageMaker's service does. Every other step is Skipped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from stepflow.errors import ValidationError
from stepflow.timefmt import require_utc

from .plan import Plan
from .state import EXECUTING, FAILED, PENDING, SKIPPED, STOPPED, SUCCEEDED, ExecutionState


@dataclass(frozen=True)
class Selection:
    """A selective execution: the steps to run, and the ended execution of the same
    pipeline whose results the steps they read come from."""

    source_execution_id: str
    steps: tuple[str, ...]


#: Executions that can be retried (SageMaker: Failed or Stopped).
RETRYABLE = (FAILED, STOPPED)


def retry(plan: Plan, state: ExecutionState, now: datetime) -> ExecutionState:
    """``state`` with every step that did not succeed Pending again and the execution
    Executing; raises ``ValidationError`` unless the execution is Failed or Stopped."""
    require_utc(now)
    if state.status not in RETRYABLE:
        raise ValidationError(
            f"Execution {state.execution_id} is {state.status}; only a Failed or Stopped execution "
            "can be retried (start a new execution, or a selective one, to run steps again).",
            reason="NotRetryable")
    new = state.copy()
    new.status, new.ended_at, new.failure_reason, new.stop_requested = EXECUTING, None, None, False
    for step in new.steps.values():
        if step.status == SUCCEEDED:
            continue
        step.status = PENDING
        step.started_at = step.ended_at = step.next_attempt_at = None
        step.failure_reason = step.skip_reason = None
        step.condition_outcome = None
    return new


def select(plan: Plan, state: ExecutionState, source: ExecutionState,
           selected: Sequence[str]) -> ExecutionState:
    """A fresh execution ``state`` that runs only ``selected``, reusing ``source``.

    A selected step's dependencies (and the condition of its branch) must be selected too
    or have succeeded in the source; otherwise nothing could give it their results.
    """
    unknown = [name for name in selected if name not in plan.steps]
    if unknown or not selected:
        raise ValidationError(
            f"Selective execution: {', '.join(map(repr, unknown)) or 'no step'} "
            f"{'is not a step' if len(unknown) == 1 else 'selected'} of the pipeline; its steps are: "
            f"{', '.join(plan.order)}.", reason="InvalidSelection")
    if source.pipeline_name != state.pipeline_name:
        raise ValidationError(
            f"Selective execution: source execution {source.execution_id} belongs to pipeline "
            f"'{source.pipeline_name}', not '{state.pipeline_name}'.", reason="InvalidSelection")
    chosen = set(selected)
    reused: set[str] = set()
    frontier = list(chosen)
    while frontier:  # what the selected steps read, directly or through unselected steps
        name = frontier.pop()
        planned = plan.step(name)
        for dep in (*planned.dependencies, *([planned.branch.condition] if planned.branch else [])):
            if dep in chosen or dep in reused:
                continue
            if _outcome(source, dep) != SUCCEEDED:
                raise ValidationError(
                    f"Selective execution: step '{name}' needs '{dep}', which is not selected and "
                    f"did not succeed in source execution {source.execution_id} (it is "
                    f"{_outcome(source, dep)}); select '{dep}' too.", reason="InvalidSelection")
            reused.add(dep)
            frontier.append(dep)
    new = state.copy()
    for name, step in new.steps.items():
        if name in reused:
            before = source.steps[name]
            step.status = SUCCEEDED
            step.started_at, step.ended_at = before.started_at, before.ended_at
            step.condition_outcome = before.condition_outcome
            step.reused_from = before.reused_from or source.execution_id
        elif name not in chosen:
            step.status = SKIPPED
            step.skip_reason = f"not selected in this selective execution (source {source.execution_id})"
    return new


def _outcome(source: ExecutionState, name: str) -> str:
    step = source.steps.get(name)
    return step.status if step is not None else "absent"
