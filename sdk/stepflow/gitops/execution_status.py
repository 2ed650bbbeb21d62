"""An execution's state as the resources' ``.status``: the one mapping both front ends use.

The operator writes these shapes on a ``PipelineExecution`` and its ``Pipeline``; ``stepflow
up`` keeps the same ``Pipeline`` status in the store. Both call these functions with the
engine's state, so what ``stepflow up`` shows on a laptop is what ``kubectl get pipelines``
shows in a cluster (a parity test feeds both the same states). Pure functions over plain
data: nothing here talks to a server.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from stepflow import timefmt
from stepflow.engine import EXECUTING, SKIPPED, STOPPING, SUCCEEDED, TERMINAL_EXECUTION_STATUSES, ExecutionState
from stepflow.gitops import conditions as cond
from stepflow.gitops import reasons

#: Phases after which an execution never changes again.
TERMINAL_PHASES = frozenset(TERMINAL_EXECUTION_STATUSES)
#: Phases of an execution that is under way (a restarted front end resumes these).
RUNNING_PHASES = frozenset({EXECUTING, STOPPING})
#: A step counts as done in STEPS when it succeeded or a condition skipped it: a run whose
#: condition took the other branch is complete, and shows ``6/6`` as the README promises.
DONE_PHASES = frozenset({SUCCEEDED, SKIPPED})

#: ``step name -> URI of its results folder`` (the backend knows where results live).
ResultUri = Callable[[str], str]


def step_entries(state: ExecutionState, result_uri: ResultUri) -> list[dict[str, Any]]:
    """``status.steps``: one entry per step, in the definition's order."""
    entries = []
    for step in state.steps.values():
        entry: dict[str, Any] = {"name": step.name, "type": step.type, "phase": step.status,
                                 "attempts": len(step.attempts)}
        if step.started_at is not None:
            entry["startedAt"] = timefmt.seconds(step.started_at)
        if step.ended_at is not None:
            entry["finishedAt"] = timefmt.seconds(step.ended_at)
        if step.failure_reason:
            entry["failureReason"] = step.failure_reason
        if step.skip_reason:
            entry["skipReason"] = step.skip_reason
        if step.type == "Training" and step.status == SUCCEEDED:
            entry["resultUri"] = result_uri(step.name)
        entries.append(entry)
    return entries


def steps_summary(steps: Sequence[Mapping[str, Any]]) -> str:
    """The STEPS column: ``done/total``."""
    done = sum(1 for s in steps if s.get("phase") in DONE_PHASES)
    return f"{done}/{len(steps)}"


def duration_text(seconds: float) -> str:
    """``1m12s``, ``3h2m``, ``8s``: how kubectl shows ages."""
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m" if minutes else f"{hours}h"
    if minutes:
        return f"{minutes}m{secs}s" if secs else f"{minutes}m"
    return f"{secs}s"


def execution_status(state: ExecutionState, result_uri: ResultUri, *,
                     now: datetime | None = None) -> dict[str, Any]:
    """The ``.status`` keys of a PipelineExecution that follow from its engine state."""
    steps = step_entries(state, result_uri)
    end = state.ended_at or now or timefmt.utcnow()
    seconds = max(0.0, (end - state.started_at).total_seconds())
    return {
        "phase": state.status,
        "executionId": state.execution_id,
        "executionArn": state.execution_arn,
        "startedAt": timefmt.seconds(state.started_at),
        "finishedAt": timefmt.seconds(state.ended_at) if state.ended_at else None,
        "parameters": dict(state.parameters),
        "steps": steps,
        "failureReason": state.failure_reason,
        "summary": {"steps": steps_summary(steps), "durationSeconds": round(seconds, 3),
                    "duration": duration_text(seconds)},
    }


def last_execution(name: str, state: ExecutionState, *, revision: str | None,
                   definition_digest: str | None) -> dict[str, Any]:
    """A Pipeline's ``status.lastExecution`` for its latest execution."""
    return {"name": name, "phase": state.status, "startedAt": timefmt.seconds(state.started_at),
            "finishedAt": timefmt.seconds(state.ended_at) if state.ended_at else None,
            "revision": revision, "definitionDigest": definition_digest}


def pipeline_status(name: str, state: ExecutionState, steps: list[dict[str, Any]], *, revision: str | None,
                    definition_digest: str | None) -> dict[str, Any]:
    """The keys of a Pipeline's ``.status`` that its latest execution owns; ``steps`` are
    :func:`step_entries` of ``state`` (the operator has them already for the execution).

    The reconciler owns every other key; callers merge these in (a merge patch on the
    resource, a dict update in ``stepflow up``).
    """
    return {"lastExecution": last_execution(name, state, revision=revision, definition_digest=definition_digest),
            "steps": steps, "summary": {"steps": steps_summary(steps)}}


def execution_conditions(previous: Sequence[cond.Condition] | None, state: ExecutionState,
                         generation: int | None, *, timestamp: str | None = None) -> list[cond.Condition]:
    """kstatus for a PipelineExecution: Ready once Succeeded, Stalled when it failed or was
    stopped (nothing will change it), Reconciling while it runs."""
    now = timestamp or timefmt.seconds()
    if state.status == SUCCEEDED:
        return cond.mark_ready(previous, observed_generation=generation, reason=reasons.SUCCEEDED,
                               message="every step succeeded or was skipped", timestamp=now)
    if state.terminal:
        reason = reasons.EXECUTION_FAILED if state.status == "Failed" else reasons.EXECUTION_STOPPED
        return cond.mark_stalled(previous, observed_generation=generation, reason=reason,
                                 message=state.failure_reason or f"the execution {state.status.lower()}",
                                 timestamp=now)
    return cond.mark_reconciling(previous, observed_generation=generation, reason=state.status,
                                 message=f"the execution is {state.status.lower()}", timestamp=now)
