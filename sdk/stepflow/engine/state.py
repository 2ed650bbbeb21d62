"""Execution state: plain data that round-trips through JSON.

The orchestrator persists this as ``execution.json`` next to the results and mirrors it
onto the Kubernetes status, so the JSON has camelCase keys in a fixed order and times in
RFC 3339 UTC with microseconds (``2024-05-01T12:00:00.000000Z``): reloading gives back an
equal object, and the engine's decisions from it are the same.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from stepflow.errors import ERROR_KINDS, DeserializationError
from stepflow.timefmt import micros as format_time
from stepflow.timefmt import parse as parse_time

STATE_VERSION = 1

EXECUTING, STOPPING, STOPPED, FAILED, SUCCEEDED = "Executing", "Stopping", "Stopped", "Failed", "Succeeded"
PENDING, STARTING, SKIPPED = "Pending", "Starting", "Skipped"
EXECUTION_STATUSES = (EXECUTING, STOPPING, STOPPED, FAILED, SUCCEEDED)
TERMINAL_EXECUTION_STATUSES = (STOPPED, FAILED, SUCCEEDED)
STEP_STATUSES = (PENDING, STARTING, EXECUTING, STOPPING, STOPPED, FAILED, SUCCEEDED, SKIPPED)
ATTEMPT_STATUSES = (STARTING, EXECUTING, STOPPING, SUCCEEDED, FAILED, STOPPED)
FAILURE_KINDS = ERROR_KINDS


@dataclass
class Attempt:
    """One run of a step's process. ``retried_by`` names the retry rule that granted the
    next attempt after this one failed (see :mod:`stepflow.engine.retry`)."""

    number: int
    status: str
    started_at: datetime
    ended_at: datetime | None = None
    exit_code: int | None = None
    failure_reason: str | None = None
    failure_kind: str | None = None
    retried_by: str | None = None

    @property
    def open(self) -> bool:
        """The orchestrator recorded it and has not seen it end: it may be running."""
        return self.ended_at is None


@dataclass
class StepState:
    name: str
    type: str
    status: str = PENDING
    attempts: list[Attempt] = field(default_factory=list)
    started_at: datetime | None = None
    ended_at: datetime | None = None
    condition_outcome: bool | None = None
    failure_reason: str | None = None
    skip_reason: str | None = None
    next_attempt_at: datetime | None = None
    reused_from: str | None = None
    """A selective execution's step not run but taken from this source execution (its id)."""

    @property
    def open_attempt(self) -> Attempt | None:
        return self.attempts[-1] if self.attempts and self.attempts[-1].open else None

    @property
    def waiting_for_retry(self) -> bool:
        return self.next_attempt_at is not None


@dataclass
class ExecutionState:
    """The whole execution. ``failure_reason`` is set by the first failure, while the
    execution still waits for running steps; ``status`` turns Failed when they are done."""

    execution_id: str
    pipeline_name: str
    started_at: datetime
    steps: dict[str, StepState]
    parameters: dict[str, Any] = field(default_factory=dict)
    status: str = EXECUTING
    ended_at: datetime | None = None
    failure_reason: str | None = None
    stop_requested: bool = False
    parallelism: int | None = None
    pipeline_arn: str | None = None
    execution_arn: str | None = None

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL_EXECUTION_STATUSES

    def copy(self) -> ExecutionState:
        """An independent copy (cheaper than deepcopy: the engine copies on every event)."""
        new = _clone(self)
        new.parameters = dict(self.parameters)
        new.steps = {}
        for name, step in self.steps.items():
            new.steps[name] = _clone(step)
            new.steps[name].attempts = [_clone(a) for a in step.attempts]
        return new

    # -- JSON -------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "executionId": self.execution_id,
            "pipelineName": self.pipeline_name,
            "status": self.status,
            "startedAt": _time(self.started_at),
            "endedAt": _time(self.ended_at),
            "failureReason": self.failure_reason,
            "stopRequested": self.stop_requested,
            "parallelism": self.parallelism,
            "pipelineArn": self.pipeline_arn,
            "executionArn": self.execution_arn,
            "parameters": dict(self.parameters),
            "steps": [_step_to_dict(s) for s in self.steps.values()],
        }

    def to_json(self) -> str:
        """Compact, so the C encoder writes it: the orchestrator persists it on every change."""
        return json.dumps(self.to_dict(), separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def from_dict(cls, data: Any) -> ExecutionState:
        try:
            return _state_from_dict(data)
        except (KeyError, TypeError, ValueError) as exc:
            detail = f"missing key {exc}" if isinstance(exc, KeyError) else str(exc)
            raise DeserializationError(
                f"the stored execution state is not valid: {detail}; it was written by another "
                "version or edited by hand (restore execution.json from the store)") from None

    @classmethod
    def from_json(cls, text: str | bytes) -> ExecutionState:
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise DeserializationError(f"the stored execution state is not JSON: {exc}") from None
        return cls.from_dict(data)


def _clone(obj: Any) -> Any:
    """Shallow copy of a plain dataclass instance, several times faster than replace()."""
    new = object.__new__(type(obj))
    new.__dict__.update(obj.__dict__)
    return new


def _time(moment: datetime | None) -> str | None:
    return None if moment is None else format_time(moment)


def _step_to_dict(step: StepState) -> dict[str, Any]:
    return {
        "name": step.name,
        "type": step.type,
        "status": step.status,
        "startedAt": _time(step.started_at),
        "endedAt": _time(step.ended_at),
        "conditionOutcome": step.condition_outcome,
        "failureReason": step.failure_reason,
        "skipReason": step.skip_reason,
        "nextAttemptAt": _time(step.next_attempt_at),
        "reusedFrom": step.reused_from,
        "attempts": [
            {
                "number": a.number,
                "status": a.status,
                "startedAt": _time(a.started_at),
                "endedAt": _time(a.ended_at),
                "exitCode": a.exit_code,
                "failureReason": a.failure_reason,
                "failureKind": a.failure_kind,
                "retriedBy": a.retried_by,
            }
            for a in step.attempts
        ],
    }


def _state_from_dict(data: Any) -> ExecutionState:
    _expect(data, Mapping, "the state")
    if data["version"] != STATE_VERSION:
        raise ValueError(f"version {data['version']!r} is not {STATE_VERSION}")
    steps = {}
    for raw in data["steps"]:
        step = _step_from_dict(raw)
        steps[step.name] = step
    state = ExecutionState(
        execution_id=_expect(data["executionId"], str, "executionId"),
        pipeline_name=_expect(data["pipelineName"], str, "pipelineName"),
        started_at=parse_time(data["startedAt"]),
        steps=steps,
        parameters=dict(_expect(data["parameters"], Mapping, "parameters")),
        status=_choice(data["status"], EXECUTION_STATUSES, "status"),
        ended_at=_optional(data["endedAt"], parse_time),
        failure_reason=_optional_str(data["failureReason"], "failureReason"),
        stop_requested=_expect(data["stopRequested"], bool, "stopRequested"),
        parallelism=_optional(data["parallelism"], lambda v: _expect(v, int, "parallelism")),
        pipeline_arn=_optional_str(data["pipelineArn"], "pipelineArn"),
        execution_arn=_optional_str(data["executionArn"], "executionArn"),
    )
    return state


def _step_from_dict(raw: Any) -> StepState:
    _expect(raw, Mapping, "a step")
    attempts = [
        Attempt(
            number=_expect(a["number"], int, "attempt number"),
            status=_choice(a["status"], ATTEMPT_STATUSES, "attempt status"),
            started_at=parse_time(a["startedAt"]),
            ended_at=_optional(a["endedAt"], parse_time),
            exit_code=_optional(a["exitCode"], lambda v: _expect(v, int, "exitCode")),
            failure_reason=_optional_str(a["failureReason"], "failureReason"),
            failure_kind=_optional(a["failureKind"], lambda v: _choice(v, FAILURE_KINDS, "failureKind")),
            retried_by=_optional_str(a["retriedBy"], "retriedBy"),
        )
        for a in raw["attempts"]
    ]
    return StepState(
        name=_expect(raw["name"], str, "step name"),
        type=_expect(raw["type"], str, "step type"),
        status=_choice(raw["status"], STEP_STATUSES, "step status"),
        attempts=attempts,
        started_at=_optional(raw["startedAt"], parse_time),
        ended_at=_optional(raw["endedAt"], parse_time),
        condition_outcome=_optional(raw["conditionOutcome"], lambda v: _expect(v, bool, "conditionOutcome")),
        failure_reason=_optional_str(raw["failureReason"], "failureReason"),
        skip_reason=_optional_str(raw["skipReason"], "skipReason"),
        next_attempt_at=_optional(raw["nextAttemptAt"], parse_time),
        reused_from=_optional_str(raw.get("reusedFrom"), "reusedFrom"),  # absent before selective runs
    )


def _expect(value: Any, kind: Any, what: str) -> Any:
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise TypeError(f"{what} has the wrong type: {value!r}")
    return value


def _choice(value: Any, allowed: tuple[str, ...], what: str) -> str:
    if value not in allowed:
        raise ValueError(f"{what} {value!r} is not one of {', '.join(allowed)}")
    return value


def _optional(value: Any, convert: Callable[[Any], Any]) -> Any:
    return None if value is None else convert(value)


def _optional_str(value: Any, what: str) -> str | None:
    return None if value is None else _expect(value, str, what)
