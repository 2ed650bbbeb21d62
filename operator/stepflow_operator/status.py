"""Status shapes: an execution's state as the CRDs' ``.status``, and merge patches between them.

Pure functions over plain data; nothing here talks to the API server.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import Any

from stepflow.engine import ExecutionState

TERMINAL_PHASES = frozenset({"Succeeded", "Failed", "Stopped"})




def merge_patch(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """The RFC 7386 JSON merge patch that turns ``old`` into ``new`` (empty: no change).

    Objects are patched key by key, so keys another writer owns and that neither side
    changed are left alone; a key ``new`` dropped becomes ``null`` (deleted); lists are
    replaced whole, which is what conditions and steps need.
    """
    patch: dict[str, Any] = {}
    for key, value in new.items():
        before = old.get(key)
        if isinstance(value, Mapping) and isinstance(before, Mapping):
            sub = merge_patch(before, value)
            if sub:
                patch[key] = sub
        elif value is None:
            if before is not None:
                patch[key] = None
        elif value != before:
            patch[key] = _plain(value)
    for key in old:
        if key not in new and old[key] is not None:
            patch[key] = None
    return patch


def _plain(value: Any) -> Any:
    """Drop None members of new objects: merge patch would read them as "delete"."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def duration_text(seconds: float) -> str:
    """``1m12s``, ``3h2m``, ``8s``: what kubectl shows for ages."""
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m" if minutes else f"{hours}h"
    if minutes:
        return f"{minutes}m{secs}s" if secs else f"{minutes}m"
    return f"{secs}s"


def steps_of(state: ExecutionState, result_uri: Callable[[str], str]) -> list[dict[str, Any]]:
    """One CRD step entry per step of the execution, in the definition's order."""
    steps = []
    for step in state.steps.values():
        entry: dict[str, Any] = {"name": step.name, "type": step.type, "phase": step.status,
                                 "attempts": len(step.attempts)}
        if step.started_at is not None:
            entry["startedAt"] = timestamp(step.started_at)
        if step.ended_at is not None:
            entry["finishedAt"] = timestamp(step.ended_at)
        if step.failure_reason:
            entry["failureReason"] = step.failure_reason
        elif step.skip_reason:
            entry["failureReason"] = step.skip_reason
        if step.type == "Training" and step.status == "Succeeded":
            entry["resultUri"] = result_uri(step.name)
        steps.append(entry)
    return steps


def steps_summary(steps: list[Mapping[str, Any]]) -> str:
    """``done/total``: steps that succeeded, of all steps."""
    done = sum(1 for s in steps if s.get("phase") == "Succeeded")
    return f"{done}/{len(steps)}"


def execution_status(state: ExecutionState, result_uri: Callable[[str], str]) -> dict[str, Any]:
    """The ``.status`` keys of a PipelineExecution that follow from its engine state."""
    steps = steps_of(state, result_uri)
    status: dict[str, Any] = {
        "phase": state.status,
        "executionId": state.execution_id,
        "startedAt": timestamp(state.started_at),
        "parameters": dict(state.parameters),
        "steps": steps,
        "failureReason": state.failure_reason,
        "finishedAt": timestamp(state.ended_at) if state.ended_at else None,
    }
    end = state.ended_at or datetime.now(timezone.utc)
    seconds = max(0.0, (end - state.started_at).total_seconds())
    status["summary"] = {"steps": steps_summary(steps), "durationSeconds": round(seconds, 3),
                         "duration": duration_text(seconds)}
    return status
