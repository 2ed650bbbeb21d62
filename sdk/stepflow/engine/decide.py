"""``decide``: from the state of an execution, what happens next.

The orchestrator's loop, the same for the local backend and the operator::

    decision = decide(plan, state, documents, now, jobs=jobs)
    if decision.documents_needed:        # read them from the store, then decide again
        documents |= read(decision.documents_needed); continue
    state = apply_all(plan, state, [*decision.events,
                                    *(AttemptStarted(l.step, l.attempt) for l in decision.launches)], now)
    persist(state)                       # write-ahead: recorded before anything starts
    start each launch; signal each stop (then apply AttemptStopping)
    wait for an attempt to end, a stop request, or decision.wake_at

Rules (SageMaker's, where it defines them):

* A step starts when every step it depends on Succeeded and, inside a condition's
  branch, when the condition took that branch. Condition and Fail steps are evaluated by
  the engine in the same call, so a chain of them resolves at once.
* The branch not taken is Skipped, and so is every step that depends on a Skipped step.
* After a step fails (retries exhausted) or a Fail step is reached, no new step starts;
  running attempts and pending retries finish; then the execution is Failed with the first
  failure's reason.
* After a stop request, every running attempt is listed in ``stops`` once, pending retries
  are stopped, nothing starts, and the execution is Stopped when no attempt runs.
* At most ``parallelism`` attempts run at once (first attempts and retries alike), taken
  in plan order.
* An attempt recorded in the state is never listed in ``launches`` again.

``decide`` is a pure function: the same plan, state, documents and ``now`` give an equal
``Decision``, including from a state that went through ``to_json``/``from_json``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from stepflow.timefmt import require_utc

from . import events as ev
from .conditions import evaluate_conditions
from .context import execution_context, resolve_container_arguments, resolve_container_environment
from .expressions import DocumentsNeeded, ExpressionError, evaluate, to_text
from .plan import Plan
from .state import FAILED, PENDING, SKIPPED, STOPPED, STOPPING, SUCCEEDED, ExecutionState
from .transitions import TransitionError, apply_in_place


@dataclass(frozen=True)
class Launch:
    """Start attempt ``attempt`` of a container step with these (resolved) arguments and
    declared environment variables."""

    step: str
    attempt: int
    step_type: str
    container_arguments: tuple[str, ...]
    environment: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Stop:
    """Tell this running attempt to stop."""

    step: str
    attempt: int


@dataclass(frozen=True)
class Decision:
    """What to do now. ``events`` are the engine's own resolutions, to apply in order;
    ``status`` is the execution's terminal status once these events are applied (None
    while it runs); ``wake_at`` is when a pending retry falls due."""

    events: tuple[ev.EngineEvent, ...] = ()
    launches: tuple[Launch, ...] = ()
    stops: tuple[Stop, ...] = ()
    documents_needed: tuple[str, ...] = ()
    wake_at: datetime | None = None
    status: str | None = None
    failure_reason: str | None = None

    @property
    def conditions(self) -> dict[str, bool]:
        """Condition steps resolved by this decision, with their outcome."""
        return {e.step: e.outcome for e in self.events if isinstance(e, ev.ConditionEvaluated)}

    @property
    def skipped(self) -> tuple[str, ...]:
        return tuple(e.step for e in self.events if isinstance(e, ev.StepSkipped))

    @property
    def fail_steps(self) -> dict[str, str]:
        """Fail steps reached by this decision, with their evaluated ErrorMessage."""
        return {e.step: e.message for e in self.events if isinstance(e, ev.FailStepReached)}

    @property
    def retries(self) -> tuple[Launch, ...]:
        return tuple(launch for launch in self.launches if launch.attempt > 1)


def decide(plan: Plan, state: ExecutionState, documents: Mapping[str, Any] | None, now: datetime,
           parallelism: int | None = None, jobs: Mapping[str, str] | None = None) -> Decision:
    """The next decision for ``state`` at ``now``.

    ``documents`` maps a URI to the parsed JSON read from it (or an
    ``UnreadableDocument``). ``parallelism`` overrides the limit stored in the state.
    ``jobs`` maps a step to the URI of its latest job's description, which expressions
    reading the job's properties need as a document (``Context.jobs``).
    """
    now = require_utc(now)
    if set(plan.steps) != set(state.steps):
        raise TransitionError(f"execution {state.execution_id} was started from another definition: its steps "
                              f"are {sorted(state.steps)}, the plan's are {sorted(plan.steps)}")
    if state.terminal:
        return Decision(status=state.status, failure_reason=state.failure_reason)
    return _Decider(plan, state, documents or {}, now,
                    parallelism if parallelism is not None else state.parallelism, jobs or {}).run()


class _Decider:
    """One call of ``decide``: applies its own events to a private copy as it goes, so
    conditions unlocked by other conditions resolve in the same decision."""

    def __init__(self, plan: Plan, state: ExecutionState, documents: Mapping[str, Any], now: datetime,
                 parallelism: int | None, jobs: Mapping[str, str]) -> None:
        if parallelism is not None and parallelism < 1:
            raise ValueError(f"parallelism must be >= 1 or None, got {parallelism!r}")
        self.plan, self.state, self.documents, self.now = plan, state.copy(), documents, now
        self.jobs = jobs
        self.parallelism = parallelism
        self.events: list[ev.EngineEvent] = []
        self.needed: set[str] = set()

    def run(self) -> Decision:
        stops = self._stop() if self.state.stop_requested else []
        self._resolve_pending()
        launches = self._launch()
        completion = self._completion(launches)
        if completion is not None:
            self._emit(completion)
        waits = [s.next_attempt_at for s in self.state.steps.values()
                 if s.next_attempt_at is not None and s.next_attempt_at > self.now]
        return Decision(
            events=tuple(self.events),
            launches=tuple(launches),
            stops=tuple(stops),
            documents_needed=tuple(sorted(self.needed)),
            wake_at=min(waits) if waits else None,
            status=completion.status if completion else None,
            failure_reason=completion.failure_reason if completion else None,
        )

    def _emit(self, event: ev.EngineEvent) -> None:
        apply_in_place(self.plan, self.state, event, self.now)
        self.events.append(event)

    @property
    def _halted(self) -> bool:
        """No new step starts after a failure or a stop request."""
        return self.state.stop_requested or self.state.failure_reason is not None

    def _stop(self) -> list[Stop]:
        stops = []
        for name in self.plan.order:
            step = self.state.steps[name]
            attempt = step.open_attempt
            if attempt is not None and attempt.status != STOPPING:
                stops.append(Stop(name, attempt.number))
            elif step.waiting_for_retry:
                self._emit(ev.StepStopped(name))
        return stops

    def _resolve_pending(self) -> None:
        """Skip what can no longer run and evaluate ready Condition/Fail steps, until
        nothing changes (a condition can unlock another condition)."""
        changed = True
        while changed:
            changed = False
            for name in self.plan.order:
                if self.state.steps[name].status != PENDING:
                    continue
                reason = self._skip_reason(name)
                if reason is not None:
                    self._emit(ev.StepSkipped(name, reason))
                    changed = True
                elif not self._halted and self._ready(name) and not self.plan.step(name).runs_container:
                    changed |= self._evaluate_step(name)

    def _skip_reason(self, name: str) -> str | None:
        step = self.plan.step(name)
        if step.branch is not None:
            condition = self.state.steps[step.branch.condition]
            if condition.status == SKIPPED:
                return f"its condition step '{step.branch.condition}' was skipped"
            if condition.status == SUCCEEDED and condition.condition_outcome is not step.branch.when:
                branch = "IfSteps" if step.branch.when else "ElseSteps"
                return (f"condition '{step.branch.condition}' evaluated to "
                        f"{to_text(condition.condition_outcome)}, so its {branch} do not run")
        for dep in step.dependencies:
            if self.state.steps[dep].status == SKIPPED:
                return f"it depends on '{dep}', which was skipped"
        return None

    def _ready(self, name: str) -> bool:
        step = self.plan.step(name)
        if any(self.state.steps[dep].status != SUCCEEDED for dep in step.dependencies):
            return False
        if step.branch is not None:
            return self.state.steps[step.branch.condition].condition_outcome is step.branch.when
        return True

    def _evaluate_step(self, name: str) -> bool:
        """Evaluate a ready Condition or Fail step; False when it waits for documents."""
        step = self.plan.step(name)
        context = execution_context(self.plan, self.state, self.documents, self.now, self.jobs)
        try:
            if step.type == "Condition":
                outcome = evaluate_conditions(step.arguments.get("Conditions", []), context)
                self._emit(ev.ConditionEvaluated(name, outcome))
            else:
                message = evaluate(step.arguments.get("ErrorMessage", ""), context)
                self._emit(ev.FailStepReached(name, to_text(message)))
        except DocumentsNeeded as needed:
            self.needed.update(needed.uris)
            return False
        except ExpressionError as exc:
            self._emit(ev.StepEvaluationFailed(name, str(exc)))
        return True

    def _launch(self) -> list[Launch]:
        running = sum(1 for s in self.state.steps.values() if s.open_attempt is not None)
        launches: list[Launch] = []
        for name in self.plan.order:
            if self.parallelism is not None and running + len(launches) >= self.parallelism:
                break
            step, plan_step = self.state.steps[name], self.plan.step(name)
            if step.waiting_for_retry:  # a stop request has already stopped these
                assert step.next_attempt_at is not None  # what waiting_for_retry means
                if step.next_attempt_at > self.now:
                    continue
            elif not (step.status == PENDING and plan_step.runs_container and not self._halted
                      and self._ready(name)):
                continue
            context = execution_context(self.plan, self.state, self.documents, self.now, self.jobs)
            try:
                arguments = resolve_container_arguments(self.plan, name, context)
                environment = resolve_container_environment(self.plan, name, context)
            except DocumentsNeeded as needed:
                self.needed.update(needed.uris)
                continue
            except ExpressionError as exc:
                self._emit(ev.StepEvaluationFailed(name, f"cannot resolve its job arguments: {exc}"))
                continue
            launches.append(Launch(name, len(step.attempts) + 1, plan_step.type, tuple(arguments),
                                   environment))
        return launches

    def _completion(self, launches: list[Launch]) -> ev.ExecutionCompleted | None:
        steps = self.state.steps.values()
        if launches or self.needed or any(s.open_attempt or s.waiting_for_retry for s in steps):
            return None
        if self.state.stop_requested:
            return ev.ExecutionCompleted(STOPPED, self.state.failure_reason)
        if self.state.failure_reason is not None:
            return ev.ExecutionCompleted(FAILED, self.state.failure_reason)
        if all(s.status in (SUCCEEDED, SKIPPED) for s in steps):
            return ev.ExecutionCompleted(SUCCEEDED)
        stuck = [s.name for s in steps if s.status not in (SUCCEEDED, SKIPPED)]
        raise AssertionError(f"engine bug: nothing runs and nothing can start, yet {stuck} are unfinished")
