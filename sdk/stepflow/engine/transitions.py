"""The reducer: ``apply(plan, state, event, now)`` returns the next state.

Events about attempts are idempotent where a restarted orchestrator may report the same
fact twice (it reconciles attempts from their records in the store): a repeated
``AttemptStarted`` or a repeated terminal report for the same attempt changes nothing. A
report that contradicts the state (a second outcome for an ended attempt, an attempt
number out of sequence, a start before the step's dependencies succeeded) raises
:class:`TransitionError`, because applying it would corrupt the run.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from stepflow.errors import INFRASTRUCTURE, USER, StepflowError
from stepflow.timefmt import require_utc

from . import events as ev
from .parameters import resolve_parameters
from .plan import Plan
from .retry import next_retry
from .state import (
    EXECUTING,
    FAILED,
    PENDING,
    SKIPPED,
    STARTING,
    STOPPED,
    STOPPING,
    SUCCEEDED,
    TERMINAL_EXECUTION_STATUSES,
    Attempt,
    ExecutionState,
    StepState,
)


class TransitionError(StepflowError):
    """An event does not fit the execution's state (a bug or a confused orchestrator)."""

    reason = "InvalidTransition"


def new_execution(plan: Plan, *, execution_id: str, pipeline_name: str, parameters: Mapping[str, Any] | None,
                  now: datetime, parallelism: int | None = None, pipeline_arn: str | None = None,
                  execution_arn: str | None = None) -> ExecutionState:
    """A fresh execution: parameters resolved and typed, every step Pending.

    ``parallelism`` is the execution's MaxParallelExecutionSteps (None: no limit); it is
    kept in the state so a resumed orchestrator honours it without being told again.
    """
    if parallelism is not None and (not isinstance(parallelism, int) or parallelism < 1):
        raise ValueError(f"parallelism must be a whole number >= 1 or None, got {parallelism!r}")
    return ExecutionState(
        execution_id=execution_id,
        pipeline_name=pipeline_name,
        started_at=require_utc(now),
        steps={name: StepState(name, step.type) for name, step in plan.steps.items()},
        parameters=resolve_parameters(plan, parameters),
        parallelism=parallelism,
        pipeline_arn=pipeline_arn,
        execution_arn=execution_arn,
    )


def apply(plan: Plan, state: ExecutionState, event: ev.Event, now: datetime) -> ExecutionState:
    """The state after ``event`` happened at ``now``; ``state`` itself is not modified."""
    new = state.copy()
    apply_in_place(plan, new, event, require_utc(now))
    return new


def apply_all(plan: Plan, state: ExecutionState, events: Iterable[ev.Event], now: datetime) -> ExecutionState:
    """Apply events in order, e.g. ``Decision.events`` then one ``AttemptStarted`` per launch."""
    new = state.copy()
    now = require_utc(now)
    for event in events:
        apply_in_place(plan, new, event, now)
    return new


def apply_in_place(plan: Plan, state: ExecutionState, event: ev.Event, now: datetime) -> None:
    """Mutating core of :func:`apply`, for callers that already own a private copy."""
    handler = _HANDLERS.get(type(event))
    if handler is None:
        raise TypeError(f"not an engine event: {event!r}")
    if isinstance(event, ev.StopRequested):
        handler(plan, state, event, now)
        return
    if state.status in TERMINAL_EXECUTION_STATUSES and not _is_repeat(state, event):
        raise TransitionError(f"execution {state.execution_id} is already {state.status}; cannot apply {event!r}")
    handler(plan, state, event, now)


def _is_repeat(state: ExecutionState, event: ev.Event) -> bool:
    """A repeated attempt report after the end changes nothing, so it is allowed."""
    step = state.steps.get(getattr(event, "step", ""))
    attempt_number = getattr(event, "attempt", None)
    if step is None or attempt_number is None or not 1 <= attempt_number <= len(step.attempts):
        return False
    attempt = step.attempts[attempt_number - 1]
    expected = {ev.AttemptStarted: None, ev.AttemptRunning: None, ev.AttemptStopping: None,
                ev.AttemptSucceeded: SUCCEEDED, ev.AttemptFailed: FAILED, ev.AttemptStopped: STOPPED}
    wanted = expected.get(type(event), "-")
    return not attempt.open and (wanted is None or attempt.status == wanted)


# -- orchestrator events --------------------------------------------------------------


def _attempt_started(plan: Plan, state: ExecutionState, event: ev.AttemptStarted, now: datetime) -> None:
    step = _step(state, event.step)
    if 1 <= event.attempt <= len(step.attempts):
        return
    if not plan.step(event.step).runs_container:
        raise TransitionError(f"step {event.step!r} is a {step.type} step; the engine evaluates it, "
                              "nothing is launched for it")
    if event.attempt != len(step.attempts) + 1:
        raise TransitionError(f"step {event.step!r}: attempt {event.attempt} is out of sequence; "
                              f"{len(step.attempts)} attempt(s) are recorded")
    first = step.status == PENDING  # attempts may exist: a retried execution keeps them
    retry = step.status == STARTING and step.next_attempt_at is not None
    if not (first or retry):
        raise TransitionError(f"step {event.step!r} is {step.status}; it cannot start attempt {event.attempt}")
    unmet = [d for d in plan.step(event.step).dependencies if state.steps[d].status != SUCCEEDED]
    if unmet:
        raise TransitionError(f"step {event.step!r} cannot start: {', '.join(unmet)} has not succeeded")
    branch = plan.step(event.step).branch
    if branch and state.steps[branch.condition].condition_outcome is not branch.when:
        raise TransitionError(f"step {event.step!r} cannot start: condition {branch.condition!r} has not "
                              f"taken the branch it belongs to")
    step.attempts.append(Attempt(event.attempt, STARTING, now))
    step.status = STARTING
    step.started_at = step.started_at or now
    step.next_attempt_at = None


def _attempt_running(plan: Plan, state: ExecutionState, event: ev.AttemptRunning, now: datetime) -> None:
    step, attempt = _attempt(state, event.step, event.attempt)
    if attempt.open and attempt.status == STARTING:
        attempt.status = EXECUTING
        step.status = EXECUTING


def _attempt_succeeded(plan: Plan, state: ExecutionState, event: ev.AttemptSucceeded, now: datetime) -> None:
    step, attempt = _attempt(state, event.step, event.attempt)
    if _ended(attempt, SUCCEEDED, event):
        return
    attempt.status, attempt.ended_at = SUCCEEDED, now
    step.status, step.ended_at, step.failure_reason = SUCCEEDED, now, None


def _attempt_failed(plan: Plan, state: ExecutionState, event: ev.AttemptFailed, now: datetime) -> None:
    if event.kind not in (USER, INFRASTRUCTURE):
        raise TransitionError(f"failure kind must be {USER!r} or {INFRASTRUCTURE!r}, got {event.kind!r}")
    step, attempt = _attempt(state, event.step, event.attempt)
    if _ended(attempt, FAILED, event):
        return
    attempt.status, attempt.ended_at = FAILED, now
    attempt.failure_reason, attempt.failure_kind, attempt.exit_code = event.reason, event.kind, event.exit_code
    settings = plan.step(event.step).retry.for_parameters(state.parameters)
    retry = next_retry(settings, [a.retried_by for a in step.attempts[:-1]],
                       step.attempts[0].started_at, event.kind, state.stop_requested, now)
    if retry is not None:
        attempt.retried_by, step.next_attempt_at = retry
        step.status = STARTING
        return
    _fail_step(state, step, event.reason, now, f"Step '{step.name}' failed: {event.reason}")


def _attempt_stopping(plan: Plan, state: ExecutionState, event: ev.AttemptStopping, now: datetime) -> None:
    step, attempt = _attempt(state, event.step, event.attempt)
    if attempt.open:
        attempt.status = STOPPING
        step.status = STOPPING


def _attempt_stopped(plan: Plan, state: ExecutionState, event: ev.AttemptStopped, now: datetime) -> None:
    step, attempt = _attempt(state, event.step, event.attempt)
    if _ended(attempt, STOPPED, event):
        return
    attempt.status, attempt.ended_at = STOPPED, now
    step.status, step.ended_at = STOPPED, now


def _stop_requested(plan: Plan, state: ExecutionState, event: ev.StopRequested, now: datetime) -> None:
    if state.terminal or state.stop_requested:
        return
    state.stop_requested = True
    state.status = STOPPING


# -- engine events --------------------------------------------------------------------


def _condition_evaluated(plan: Plan, state: ExecutionState, event: ev.ConditionEvaluated, now: datetime) -> None:
    step = _pending(state, event.step, "Condition")
    step.status, step.condition_outcome = SUCCEEDED, event.outcome
    step.started_at = step.ended_at = now


def _step_skipped(plan: Plan, state: ExecutionState, event: ev.StepSkipped, now: datetime) -> None:
    step = _pending(state, event.step)
    step.status, step.skip_reason = SKIPPED, event.reason


def _fail_step_reached(plan: Plan, state: ExecutionState, event: ev.FailStepReached, now: datetime) -> None:
    step = _pending(state, event.step, "Fail")
    step.started_at = now
    message = event.message or f"Fail step '{step.name}' was reached"
    _fail_step(state, step, message, now, message)


def _step_evaluation_failed(plan: Plan, state: ExecutionState, event: ev.StepEvaluationFailed,
                            now: datetime) -> None:
    step = _step(state, event.step)
    if step.status != PENDING and not step.waiting_for_retry:
        raise TransitionError(f"step {event.step!r} is {step.status}; only a step about to start can fail "
                              "its evaluation")
    step.started_at = step.started_at or now
    _fail_step(state, step, event.reason, now, f"Step '{step.name}' failed: {event.reason}")


def _step_stopped(plan: Plan, state: ExecutionState, event: ev.StepStopped, now: datetime) -> None:
    step = _step(state, event.step)
    if not step.waiting_for_retry:
        raise TransitionError(f"step {event.step!r} is not waiting for a retry; stop its attempt instead")
    step.status, step.ended_at, step.next_attempt_at = STOPPED, now, None


def _execution_completed(plan: Plan, state: ExecutionState, event: ev.ExecutionCompleted, now: datetime) -> None:
    if event.status not in TERMINAL_EXECUTION_STATUSES:
        raise TransitionError(f"{event.status!r} is not a terminal execution status")
    running = [s.name for s in state.steps.values() if s.open_attempt or s.waiting_for_retry]
    if running:
        raise TransitionError(f"execution cannot complete while {', '.join(running)} still run")
    state.status, state.ended_at = event.status, now
    state.failure_reason = event.failure_reason


# -- helpers --------------------------------------------------------------------------


def _step(state: ExecutionState, name: str) -> StepState:
    try:
        return state.steps[name]
    except KeyError:
        raise TransitionError(f"execution {state.execution_id} has no step {name!r}") from None


def _attempt(state: ExecutionState, name: str, number: int) -> tuple[StepState, Attempt]:
    step = _step(state, name)
    if not 1 <= number <= len(step.attempts):
        raise TransitionError(f"step {name!r} has no attempt {number} recorded (it has {len(step.attempts)}); "
                              "record AttemptStarted before launching")
    return step, step.attempts[number - 1]


def _ended(attempt: Attempt, outcome: str, event: ev.Event) -> bool:
    """True when the attempt already ended with this outcome (a repeat: ignore it)."""
    if attempt.open:
        return False
    if attempt.status == outcome:
        return True
    raise TransitionError(f"{event!r}: attempt {attempt.number} already ended as {attempt.status}")


def _pending(state: ExecutionState, name: str, kind: str | None = None) -> StepState:
    step = _step(state, name)
    if step.status != PENDING or (kind is not None and step.type != kind):
        raise TransitionError(f"step {name!r} is a {step.status} {step.type} step; expected a Pending "
                              f"{kind or ''} step".replace("  ", " "))
    return step


def _fail_step(state: ExecutionState, step: StepState, reason: str, now: datetime, execution_reason: str) -> None:
    step.status, step.failure_reason, step.ended_at, step.next_attempt_at = FAILED, reason, now, None
    if state.failure_reason is None:
        state.failure_reason = execution_reason


_HANDLERS: dict[type, Any] = {
    ev.AttemptStarted: _attempt_started,
    ev.AttemptRunning: _attempt_running,
    ev.AttemptSucceeded: _attempt_succeeded,
    ev.AttemptFailed: _attempt_failed,
    ev.AttemptStopping: _attempt_stopping,
    ev.AttemptStopped: _attempt_stopped,
    ev.StopRequested: _stop_requested,
    ev.ConditionEvaluated: _condition_evaluated,
    ev.StepSkipped: _step_skipped,
    ev.FailStepReached: _fail_step_reached,
    ev.StepEvaluationFailed: _step_evaluation_failed,
    ev.StepStopped: _step_stopped,
    ev.ExecutionCompleted: _execution_completed,
}
