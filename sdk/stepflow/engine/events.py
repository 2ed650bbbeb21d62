"""Events: everything that changes an execution's state.

Two families. The orchestrator reports what happened to the processes it runs
(``Attempt*``) and what the user asked (``StopRequested``). The engine itself produces the
rest in :attr:`Decision.events` (conditions evaluated, steps skipped, Fail steps reached,
the execution completed); the orchestrator applies them exactly as they come, so the
persisted state says why every step ended where it did.
"""

from __future__ import annotations

from dataclasses import dataclass

# -- reported by the orchestrator ------------------------------------------------------


@dataclass(frozen=True)
class AttemptStarted:
    """Record *before* starting the process: a recorded attempt is never launched again,
    so a crash between the record and the start is reconciled from the attempt's own
    record in the store, not by a second launch."""

    step: str
    attempt: int


@dataclass(frozen=True)
class AttemptRunning:
    """The process (or Job's pod) is confirmed running."""

    step: str
    attempt: int


@dataclass(frozen=True)
class AttemptSucceeded:
    step: str
    attempt: int


@dataclass(frozen=True)
class AttemptFailed:
    """``kind`` is ``"User"`` (the step's code failed) or ``"Infrastructure"`` (it could
    not run); only infrastructure failures are retried."""

    step: str
    attempt: int
    reason: str
    kind: str
    exit_code: int | None = None


@dataclass(frozen=True)
class AttemptStopping:
    """The orchestrator has told the attempt to stop (after a ``Decision.stops`` entry)."""

    step: str
    attempt: int


@dataclass(frozen=True)
class AttemptStopped:
    """The attempt ended because it was told to stop."""

    step: str
    attempt: int


@dataclass(frozen=True)
class StopRequested:
    reason: str | None = None


# -- produced by the engine (Decision.events) ------------------------------------------


@dataclass(frozen=True)
class ConditionEvaluated:
    step: str
    outcome: bool


@dataclass(frozen=True)
class StepSkipped:
    step: str
    reason: str


@dataclass(frozen=True)
class FailStepReached:
    """A Fail step ran: it fails, and so will the execution, with ``message``."""

    step: str
    message: str


@dataclass(frozen=True)
class StepEvaluationFailed:
    """The engine could not evaluate a step's condition, message or job arguments."""

    step: str
    reason: str


@dataclass(frozen=True)
class StepStopped:
    """A step waiting for a retry is stopped without an attempt to signal."""

    step: str


@dataclass(frozen=True)
class ExecutionCompleted:
    status: str
    failure_reason: str | None = None


OrchestratorEvent = (AttemptStarted | AttemptRunning | AttemptSucceeded | AttemptFailed | AttemptStopping
                     | AttemptStopped | StopRequested)
EngineEvent = (ConditionEvaluated | StepSkipped | FailStepReached | StepEvaluationFailed | StepStopped
               | ExecutionCompleted)
Event = OrchestratorEvent | EngineEvent
