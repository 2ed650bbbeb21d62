"""Drive one execution to its end: the engine decides, a launcher acts, the store remembers.

The loop is the one written in :mod:`stepflow.engine.decide`. Everything the loop knows
is in the store (``execution.json``, the attempt records the runtime writes, the stop
request), so a new orchestrator picks up where a dead one stopped: attempts recorded as
started are found again by the launcher or judged by their records, never launched twice.
The launcher is the only part that differs between the local backend (processes on this
machine) and the operator. The orchestrator also describes each attempt's job, as SageMaker
does (:mod:`~stepflow.backends.job_descriptions`), for the expressions that read its
properties.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

from stepflow import layout
from stepflow.backends.job_descriptions import JobBook
from stepflow.backends.local.launcher import ProcessStatus
from stepflow.engine import (
    AttemptFailed,
    AttemptRunning,
    AttemptStarted,
    AttemptStopped,
    AttemptStopping,
    AttemptSucceeded,
    Decision,
    DocumentsNeeded,
    ExecutionState,
    Plan,
    StopRequested,
    UnreadableDocument,
    apply_all,
    decide,
    execution_context,
    resolve,
    resolve_container_arguments,
    resolve_container_environment,
)
from stepflow.errors import StepflowError
from stepflow.storage import NotFound, ObjectStore, open_store
from stepflow.timefmt import utcnow

log = logging.getLogger(__name__)

_SIGNALS = {9: "SIGKILL", 15: "SIGTERM", 6: "SIGABRT", 11: "SIGSEGV", 2: "SIGINT", 1: "SIGHUP"}


class Launcher(Protocol):
    def launch(self, execution_id: str, step: str, attempt: int, arguments: Sequence[str],
               environment: Mapping[str, str] | None = None) -> int: ...
    def status(self, execution_id: str, step: str, attempt: int) -> ProcessStatus | None: ...
    def stop(self, execution_id: str, step: str, attempt: int, grace: float = 10.0) -> None: ...
    def forget(self, execution_id: str, step: str, attempt: int) -> None: ...


class Orchestrator:
    """Owns one execution while it runs. ``store`` is rooted at ``<root>/<pipeline>``."""

    def __init__(self, store: ObjectStore, plan: Plan, state: ExecutionState, launcher: Launcher, *,
                 on_change: Callable[[ExecutionState], None] | None = None,
                 clock: Callable[[], datetime] = utcnow, upload_log: Callable[[str, int], None] | None = None) -> None:
        self.store = store
        self.plan = plan
        self.state = state
        self.launcher = launcher
        self.clock = clock
        self.on_change = on_change
        self.upload_log = upload_log
        self._persisted = state.to_json()
        self.jobs = JobBook(store, plan, state)
        self.documents = Documents(plan, self.jobs, clock)

    @property
    def execution_id(self) -> str:
        return self.state.execution_id

    # -- one pass ------------------------------------------------------------------------

    def tick(self) -> Decision:
        """Observe, decide, record, act. Returns the decision (for its ``wake_at``)."""
        now = self.clock()
        state = apply_all(self.plan, self.state, self._observe(), now)
        self._describe_jobs(state)  # the jobs that ended, described before anything reads them
        while True:
            decision = decide(self.plan, state, self.documents.read, now, jobs=self.jobs.uris(state))
            if not decision.documents_needed:
                break
            self.documents.fetch(state, decision.documents_needed)
        started = [AttemptStarted(l.step, l.attempt) for l in decision.launches]
        state = apply_all(self.plan, state, [*decision.events, *started], now)
        self._persist(state)  # write-ahead: recorded before any process starts
        after: list[Any] = []
        for launch in decision.launches:
            if launch.step_type not in getattr(self.launcher, "step_types", RUNNABLE_STEP_TYPES):
                after.append(AttemptFailed(launch.step, launch.attempt, _unsupported(launch.step_type), "User"))
                continue
            self.launcher.launch(self.execution_id, launch.step, launch.attempt, launch.container_arguments,
                                 launch.environment)
            after.append(AttemptRunning(launch.step, launch.attempt))
        for stop in decision.stops:
            self.launcher.stop(self.execution_id, stop.step, stop.attempt, grace=0)
            after.append(AttemptStopping(stop.step, stop.attempt))
        if after:
            self._persist(apply_all(self.plan, state, after, self.clock()))
        return decision

    def run(self, *, poll: float = 0.05, max_poll: float = 0.5,
            should_stop: Callable[[], bool] = lambda: False) -> ExecutionState:
        """Tick until the execution is over. Polls fast while steps finish quickly and backs
        off while they run long, so a step's end is noticed within ``max_poll`` seconds; a
        launcher with a ``wait(timeout)`` cuts the sleep short when one of its processes ends."""
        delay = poll
        try:
            while not self.state.terminal and not should_stop():
                before = self._persisted
                decision = self.tick()
                if self.state.terminal:
                    break
                delay = poll if self._persisted != before else min(max_poll, delay * 1.5)
                if decision.wake_at is not None:
                    until = (decision.wake_at - self.clock()).total_seconds()
                    delay = max(0.0, min(delay, until)) if until > 0 else 0.0
                getattr(self.launcher, "wait", time.sleep)(delay)
        finally:
            close = getattr(self.launcher, "close", None)
            if close is not None:
                close()
        return self.state

    # -- observing attempts ----------------------------------------------------------------

    def _observe(self) -> list[Any]:
        events: list[Any] = []
        if not self.state.stop_requested and self.store.head(layout.stop_request_key(self.execution_id)):
            events.append(StopRequested("stop requested"))
        for step in self.state.steps.values():
            attempt = step.open_attempt
            if attempt is None:
                continue
            event = self._attempt_outcome(step.name, attempt.number, attempt.status)
            if event is not None:
                events.append(event)
        return events

    def _attempt_outcome(self, step: str, number: int, status: str) -> Any:
        record = self._record(step, number)
        if record is None:
            proc = self.launcher.status(self.execution_id, step, number)
            if proc is None:
                if status == "Stopping":  # told to stop, and gone (a deleted Job): stopped
                    return AttemptStopped(step, number)
                # Recorded as started but no process was ever seen: the previous
                # orchestrator died between its write-ahead record and the launch.
                arguments, environment = self._arguments_for(step)
                self.launcher.launch(self.execution_id, step, number, arguments, environment)
                return AttemptRunning(step, number)
            if proc.state == "running":
                return AttemptRunning(step, number) if status == "Starting" else None
            record = self._record(step, number)  # it may have written its record as it exited
            if record is None:
                self._finish(step, number)
                if status == "Stopping":
                    return AttemptStopped(step, number)
                return AttemptFailed(step, number, proc.reason or _vanished(proc), proc.kind, proc.exit_code)
        self._finish(step, number)
        if record.get("status") == "Succeeded":
            return AttemptSucceeded(step, number)
        if status == "Stopping":
            return AttemptStopped(step, number)
        return AttemptFailed(step, number, record.get("failureReason") or "the step failed",
                             record.get("failureKind") or "User", record.get("exitCode"))

    def _arguments_for(self, step: str) -> tuple[list[str], dict[str, str]]:
        return self.documents.evaluate(self.state, lambda context: (
            resolve_container_arguments(self.plan, step, context),
            resolve_container_environment(self.plan, step, context)))

    def _describe_jobs(self, state: ExecutionState) -> None:
        self.jobs.record(state, lambda state, value: self.documents.evaluate(state, lambda c: resolve(value, c)))

    def _record(self, step: str, number: int) -> dict[str, Any] | None:
        try:
            return json.loads(self.store.get_bytes(layout.attempt_record_key(self.execution_id, step, number)))
        except NotFound:
            return None

    def _finish(self, step: str, number: int) -> None:
        self.launcher.forget(self.execution_id, step, number)
        if self.upload_log is not None:
            try:
                self.upload_log(step, number)
            except (OSError, StepflowError) as exc:
                log.warning("could not upload the log of %s attempt %s: %s", step, number, exc)

    # -- store I/O -----------------------------------------------------------------------

    def _persist(self, state: ExecutionState) -> None:
        self._describe_jobs(state)  # before the state that implies them
        self.state = state
        text = state.to_json()
        if text == self._persisted:
            return
        self.store.put_bytes(layout.execution_state_key(self.execution_id), text.encode())
        self._persisted = text
        if self.on_change is not None:
            self.on_change(state)


class Documents:
    """The JSON documents an execution's expressions read from the store (a step's
    ``results.json`` through JsonGet, a job's description), each read once, and evaluation
    with them: what the engine asks for is read, then the expression evaluated again."""

    def __init__(self, plan: Plan, jobs: JobBook, clock: Callable[[], datetime] = utcnow) -> None:
        self.plan, self.jobs, self.clock = plan, jobs, clock
        #: URI → the parsed document, or an ``UnreadableDocument``.
        self.read: dict[str, Any] = {}

    def evaluate(self, state: ExecutionState, compute: Callable[[Any], Any]) -> Any:
        """``compute(context)`` in the execution's context, once the documents it needs are read."""
        while True:
            context = execution_context(self.plan, state, self.read, self.clock(), self.jobs.uris(state))
            try:
                return compute(context)
            except DocumentsNeeded as needed:
                self.fetch(state, needed.uris)

    def fetch(self, state: ExecutionState, uris: Sequence[str]) -> None:
        jobs = set(self.jobs.uris(state).values())
        for uri in uris:
            self.read[uri] = _read_document(uri, job=uri in jobs)


def _read_document(uri: str, *, job: bool) -> Any:
    parent, _, name = uri.rpartition("/")
    try:
        return json.loads(open_store(parent).get_bytes(name))
    except NotFound:
        if job:
            return UnreadableDocument(f"{uri} does not exist: the orchestrator of the step's job did not describe "
                                      "it (the attempt ran before stepflow described jobs)")
        return UnreadableDocument(f"{uri} does not exist: the step that should have written it "
                                  "did not serialize its output to JSON")
    except (ValueError, StepflowError) as exc:
        return UnreadableDocument(f"{uri} could not be read: {exc}")


#: Step types a launcher runs unless it says otherwise (``step_types``): @step functions.
RUNNABLE_STEP_TYPES = ("Training",)


def _unsupported(step_type: str) -> str:
    return (f"UnsupportedStepType: {step_type} steps run a container image, and this backend runs "
            "@step functions as local processes only. Turn the step into a @step function, or run "
            "the pipeline on a backend that runs containers.")


def _vanished(proc: ProcessStatus) -> str:
    code = proc.exit_code
    if code is None:
        return ("The step's process ended without writing a result (it was not started by this "
                "orchestrator, so its exit status is unknown)")
    if code < 0:
        return f"The step's process was killed by signal {_SIGNALS.get(-code, -code)} before it wrote a result"
    return f"The step's process exited with code {code} without writing a result"
