"""The embedded GitOps loop behind ``stepflow up``: the operator's reconcile, without a cluster.

What the API server and kopf give the operator, this module does for itself:

* **the resources** are ``Pipeline`` manifests in a folder (:mod:`stepflow.gitops.manifests`),
  re-read when the files change; a spec change bumps a generation, as the API server does;
* **the status** lives in memory and in the store, at ``<store>/.stepflow-up/<name>.json``,
  so a restart neither rebuilds nor re-runs what is current, and a second machine pointed
  at the same store sees the same state;
* **the timers**: each pipeline is reconciled every ``spec.source.interval``;
* **the executions** the reconciler asks for run on the local backend, each in its own
  thread, so pipelines (and several executions) progress at once while the loop goes on.

The reconciler core owns everything it reports in ``Outcome.status``; this loop owns
``lastExecution``, ``steps`` and ``summary.steps``, and merges the two. Nothing here prints:
callers observe through ``on_change``/``on_event`` and read :meth:`EmbeddedLoop.rows`.
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from stepflow import layout
from stepflow.engine import ExecutionState, Plan
from stepflow.errors import StepflowError
from stepflow.gitops.conditions import READY, get_condition
from stepflow.gitops.manifests import Manifest, ManifestProblem, discover, manifest_files
from stepflow.storage import NotFound, ObjectStore

log = logging.getLogger(__name__)

STATE_PREFIX = ".stepflow-up"
TERMINAL_PHASES = ("Succeeded", "Failed", "Stopped")
#: Keys of ``.status`` this loop owns; the reconciler's Outcome owns every other one.
CALLER_KEYS = ("lastExecution", "steps")


def _ts(moment: datetime | None = None) -> str:
    moment = moment or datetime.now(timezone.utc)
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_ts(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


# -- persisted state ------------------------------------------------------------------------


@dataclass
class PipelineState:
    """What ``up`` remembers about one pipeline between passes and between runs."""

    name: str
    created_at: str = field(default_factory=_ts)
    generation: int = 0
    spec_digest: str | None = None
    status: dict[str, Any] = field(default_factory=dict)
    #: The latest executions, newest first, at most ``spec.historyLimit``.
    history: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> bytes:
        return json.dumps({"name": self.name, "createdAt": self.created_at, "generation": self.generation,
                           "specDigest": self.spec_digest, "status": self.status,
                           "history": self.history}, indent=1, sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> PipelineState:
        raw = json.loads(data)
        return cls(name=raw["name"], created_at=raw.get("createdAt") or _ts(),
                   generation=int(raw.get("generation") or 0), spec_digest=raw.get("specDigest"),
                   status=dict(raw.get("status") or {}), history=list(raw.get("history") or []))


class StateStore:
    """``<store>/.stepflow-up/<name>.json``: one small document per pipeline."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store

    def key(self, name: str) -> str:
        return f"{STATE_PREFIX}/{name}.json"

    def load(self, name: str) -> PipelineState:
        try:
            return PipelineState.from_json(self.store.get_bytes(self.key(name)))
        except NotFound:
            return PipelineState(name=name)
        except (ValueError, KeyError) as exc:
            log.warning("%s is unreadable (%s); starting %s afresh", self.store.uri(self.key(name)), exc, name)
            return PipelineState(name=name)

    def save(self, state: PipelineState) -> None:
        self.store.put_bytes(self.key(state.name), state.to_json())


def merge_status(reconciled: Mapping[str, Any], current: Mapping[str, Any]) -> dict[str, Any]:
    """The reconciler's status with this loop's own keys carried over from ``current``."""
    status = copy.deepcopy(dict(reconciled))
    for key in CALLER_KEYS:
        if key in current:
            status[key] = copy.deepcopy(current[key])
        else:
            status.pop(key, None)
    summary = dict(status.get("summary") or {})
    steps = (current.get("summary") or {}).get("steps")
    if steps is not None:
        summary["steps"] = steps
    if summary:
        status["summary"] = summary
    return status


def step_entries(plan: Plan, state: ExecutionState, pipeline_store: ObjectStore) -> list[dict[str, Any]]:
    """``status.steps`` (the CRD's shape) for one execution."""
    from stepflow.backends.views import list_steps

    out = []
    for view in list_steps(plan, state):
        entry: dict[str, Any] = {"name": view["StepName"], "type": view["StepType"],
                                 "phase": view["StepStatus"], "attempts": view["AttemptCount"]}
        if view.get("StartTime"):
            entry["startedAt"] = _ts(view["StartTime"])
        if view.get("EndTime"):
            entry["finishedAt"] = _ts(view["EndTime"])
        if view.get("FailureReason"):
            entry["failureReason"] = view["FailureReason"]
        if view["StepStatus"] == "Succeeded" and view["StepType"] == "Training":
            entry["resultUri"] = pipeline_store.uri(layout.results_prefix(state.execution_id, view["StepName"]))
        out.append(entry)
    return out


def steps_summary(steps: list[Mapping[str, Any]]) -> str:
    """``done/total``: a step is done when it succeeded or a condition skipped it."""
    done = sum(1 for s in steps if s.get("phase") in ("Succeeded", "Skipped"))
    return f"{done}/{len(steps)}"


# -- what callers see ------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """One line of ``stepflow up``'s table, ``kubectl get pipelines``' columns."""

    name: str
    revision: str
    ready: str
    phase: str
    steps: str
    last_run: datetime | None
    created: datetime | None
    message: str


@dataclass(frozen=True)
class ExecutionReport:
    """An execution this loop ran (started or resumed), as it ended."""

    pipeline: str
    name: str
    phase: str
    failure_reason: str | None = None


@dataclass
class _Tracked:
    manifest: Manifest
    state: PipelineState
    lock: threading.Lock = field(default_factory=threading.Lock)
    due: float = 0.0
    task: asyncio.Task | None = None
    problem: str | None = None  # an execution that could not start, shown until the next one does


# -- the loop --------------------------------------------------------------------------------


class EmbeddedLoop:
    """Reconciles every ``Pipeline`` manifest under ``directory`` against ``reconciler``.

    ``reconciler`` is a :class:`stepflow.gitops.reconciler.Reconciler` (built by the caller,
    so it chooses the work dir, sandbox settings, key and default store). ``interval``
    overrides every manifest's ``spec.source.interval``.
    """

    def __init__(self, directory: str | Path, *, reconciler: Any, state_store: ObjectStore,
                 interval: float | None = None,
                 on_change: Callable[[], None] | None = None,
                 on_event: Callable[[str, Any], None] | None = None) -> None:
        self.directory = Path(directory)
        self.reconciler = reconciler
        self.states = StateStore(state_store)
        self.interval = interval
        self.on_change = on_change or (lambda: None)
        self.on_event = on_event or (lambda name, event: None)
        self.problems: list[ManifestProblem] = []
        self.reports: list[ExecutionReport] = []
        self._tracked: dict[str, _Tracked] = {}
        self._threads: dict[str, threading.Thread] = {}
        self._stopping = threading.Event()
        self._files_seen: object = None
        self._reports_lock = threading.Lock()

    # -- manifests -----------------------------------------------------------------------

    def _files_fingerprint(self) -> object:
        try:
            return tuple((str(p), p.stat().st_mtime_ns, p.stat().st_size) for p in manifest_files(self.directory))
        except OSError:
            return None

    def refresh(self, *, force: bool = False) -> bool:
        """Re-read the manifests when their files changed; True when anything did."""
        fingerprint = self._files_fingerprint()
        if not force and fingerprint == self._files_seen and fingerprint is not None:
            return False
        self._files_seen = fingerprint
        manifests, problems = discover(self.directory)
        self.problems = problems
        names = {m.name for m in manifests}
        for name in list(self._tracked):
            if name not in names and self._tracked[name].task is None:
                del self._tracked[name]  # its state stays in the store
        for manifest in manifests:
            tracked = self._tracked.get(manifest.name)
            if tracked is None:
                tracked = _Tracked(manifest, self.states.load(manifest.name))
                self._tracked[manifest.name] = tracked
            elif tracked.manifest.spec_digest != manifest.spec_digest:
                tracked.due = 0.0  # a spec change is reconciled at once, as a watch event would be
            tracked.manifest = manifest
        self.on_change()
        return True

    # -- one reconcile ---------------------------------------------------------------------

    async def reconcile(self, name: str) -> None:
        tracked = self._tracked[name]
        manifest = tracked.manifest
        with tracked.lock:
            state = tracked.state
            if state.spec_digest != manifest.spec_digest:
                state.generation += 1
                state.spec_digest = manifest.spec_digest
            status = copy.deepcopy(state.status)
            generation = state.generation
        spec = _resolved_spec(manifest)
        outcome = await self.reconciler.reconcile(name, spec, status, generation=generation)
        start = outcome.execution is not None and not self._stopping.is_set()
        if outcome.execution is not None and not start:
            # Not started: forget it was requested, so the next `up` requests it again.
            outcome.status["triggered"] = status.get("triggered")
        with tracked.lock:  # executions' threads write the same state: one writer at a time
            state.status = merge_status(outcome.status, state.status)
        for event in outcome.events:
            self.on_event(name, event)
        self.on_change()
        # The execution's record first, then the state that says it was requested: killed in
        # between, the next `up` requests it again and its deterministic id makes that a no-op.
        if start:
            await self._start_execution(tracked, outcome.execution)
        with tracked.lock:
            self.states.save(state)
        interval = self.interval or manifest.parsed.interval
        if outcome.requeue_after is not None:
            interval = min(interval, max(outcome.requeue_after, 0.5))
        tracked.due = time.monotonic() + interval

    # -- executions ------------------------------------------------------------------------

    def _pipeline_name(self, tracked: _Tracked, execution_id: str | None = None) -> str | None:
        """The SageMaker pipeline name (from the user's code) an execution belongs to."""
        for entry in tracked.state.history:
            if execution_id is not None and entry.get("name") == execution_id and entry.get("pipelineName"):
                return entry["pipelineName"]
        return (tracked.state.status.get("definition") or {}).get("pipelineName")

    async def _start_execution(self, tracked: _Tracked, request: Any) -> None:
        name = tracked.manifest.name
        pipeline_name = request.pipeline_name
        backend = self.reconciler.backend_for(tracked.manifest.parsed)
        try:
            state = await asyncio.to_thread(backend.create_execution, pipeline_name,
                                            parameters=dict(request.parameters or {}),
                                            execution_id=request.name)
        except StepflowError as exc:
            tracked.problem = f"{exc.reason}: {exc.message}"
            self.on_event(name, _event("Warning", "ExecutionFailed",
                                       f"execution {request.name} could not start: {exc.message}"))
            self.on_change()
            return
        tracked.problem = None
        record = {"name": request.name, "phase": state.status, "startedAt": _ts(state.started_at),
                  "revision": request.revision, "definitionDigest": request.definition_digest}
        with tracked.lock:
            tracked.state.status["lastExecution"] = record
            entry = {**record, "pipelineName": pipeline_name}
            tracked.state.history = [entry, *[h for h in tracked.state.history if h.get("name") != request.name]]
            del tracked.state.history[tracked.manifest.parsed.history_limit:]
            self._apply_execution(tracked, backend, pipeline_name, state, request.definition_digest)
        self.on_event(name, _event("Normal", "ExecutionStarted",
                                   f"execution {request.name} started ({request.trigger}, {request.revision})"))
        self._run_in_thread(tracked, backend, pipeline_name, request.name, request.definition_digest)

    def resume_unfinished(self) -> None:
        """Pick up executions an earlier ``up`` left running (their state is in the store)."""
        for tracked in self._tracked.values():
            last = tracked.state.status.get("lastExecution") or {}
            pipeline_name = self._pipeline_name(tracked, last.get("name"))
            if last.get("name") and last.get("phase") not in TERMINAL_PHASES \
                    and last["name"] not in self._threads and pipeline_name:
                backend = self.reconciler.backend_for(tracked.manifest.parsed)
                self._run_in_thread(tracked, backend, pipeline_name, last["name"], last.get("definitionDigest"))

    def _run_in_thread(self, tracked: _Tracked, backend: Any, pipeline_name: str, execution_id: str,
                       digest: str | None) -> None:
        thread = threading.Thread(target=self._run_execution, name=f"execution-{execution_id}",
                                  args=(tracked, backend, pipeline_name, execution_id, digest), daemon=True)
        self._threads[execution_id] = thread
        thread.start()

    def _run_execution(self, tracked: _Tracked, backend: Any, pipeline_name: str, execution_id: str,
                       digest: str | None) -> None:
        name = tracked.manifest.name
        try:
            plan = Plan.from_definition(backend.definition(pipeline_name, digest))

            def changed(state: ExecutionState) -> None:
                with tracked.lock:
                    self._apply_execution(tracked, backend, pipeline_name, state, digest, plan=plan)
                self.on_change()

            try:
                final = backend.run(pipeline_name, execution_id, on_change=changed,
                                    should_stop=self._stopping.is_set)
            except StepflowError as exc:
                if exc.reason != "ExecutionBusy":
                    raise
                final = self._watch(backend, pipeline_name, execution_id, changed)  # another process runs it
            changed(final)
        except StepflowError as exc:
            self.on_event(name, _event("Warning", "ExecutionFailed", f"execution {execution_id}: {exc.message}"))
            with self._reports_lock:
                self.reports.append(ExecutionReport(name, execution_id, "Failed", failure_reason=exc.message))
            self.on_change()
            return
        if not final.terminal:
            return  # we are stopping; the execution resumes next time
        with self._reports_lock:
            self.reports.append(ExecutionReport(name, execution_id, final.status, final.failure_reason))
        kind = "Normal" if final.status == "Succeeded" else "Warning"
        suffix = f": {final.failure_reason}" if final.failure_reason else ""
        self.on_event(name, _event(kind, f"Execution{final.status}", f"execution {execution_id} {final.status}{suffix}"))
        self.on_change()

    def _watch(self, backend: Any, pipeline_name: str, execution_id: str,
               changed: Callable[[ExecutionState], None]) -> ExecutionState:
        store = backend.pipeline_store(pipeline_name)
        delay = 0.1
        while True:
            state = ExecutionState.from_json(store.get_bytes(layout.execution_state_key(execution_id)))
            changed(state)
            if state.terminal or self._stopping.wait(delay):
                return state
            delay = min(1.0, delay * 1.5)

    def _apply_execution(self, tracked: _Tracked, backend: Any, pipeline_name: str, state: ExecutionState,
                         digest: str | None, *, plan: Plan | None = None) -> None:
        """Mirror an execution's state onto the status (caller holds ``tracked.lock``)."""
        status = tracked.state.status
        record = next((h for h in tracked.state.history if h.get("name") == state.execution_id), None)
        update = {"phase": state.status, "startedAt": _ts(state.started_at)}
        if state.ended_at is not None:
            update["finishedAt"] = _ts(state.ended_at)
        if record is not None:
            record.update(update)
        last = status.get("lastExecution") or {}
        if last.get("name") == state.execution_id:
            last.update(update)
            plan = plan or Plan.from_definition(backend.definition(pipeline_name, digest))
            steps = step_entries(plan, state, backend.pipeline_store(pipeline_name))
            status["steps"] = steps
            status.setdefault("summary", {})["steps"] = steps_summary(steps)
        try:
            self.states.save(tracked.state)
        except StepflowError as exc:
            log.warning("could not save the state of %s: %s", tracked.manifest.name, exc)

    # -- running ---------------------------------------------------------------------------

    async def run_once(self) -> None:
        """One reconcile per pipeline (concurrently), then wait for the executions they ran."""
        self.refresh(force=True)
        self.resume_unfinished()
        names = list(self._tracked)
        results = await asyncio.gather(*(self._guarded(name) for name in names), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        await self.wait_executions()

    async def run_forever(self, stop: asyncio.Event) -> None:
        """Reconcile each pipeline on its interval until ``stop`` is set."""
        self.refresh(force=True)
        self.resume_unfinished()
        try:
            while not stop.is_set():
                self.refresh()
                now = time.monotonic()
                for name, tracked in self._tracked.items():
                    if tracked.task is None and tracked.due <= now and not tracked.manifest.parsed.suspend:
                        tracked.task = asyncio.create_task(self._guarded(name))
                        tracked.task.add_done_callback(lambda _t, tr=tracked: setattr(tr, "task", None))
                waits = [t.due - now for t in self._tracked.values() if t.task is None]
                timeout = min([1.0, *waits]) if waits else 1.0
                try:
                    await asyncio.wait_for(stop.wait(), timeout=max(timeout, 0.05))
                except asyncio.TimeoutError:
                    pass
        finally:
            await self.shutdown()

    async def _guarded(self, name: str) -> None:
        """A reconcile that fails unexpectedly is reported and retried later, never fatal to the loop."""
        tracked = self._tracked[name]
        if tracked.manifest.parsed.suspend and tracked.state.status:
            tracked.due = time.monotonic() + (self.interval or tracked.manifest.parsed.interval)
            return
        try:
            await self.reconcile(name)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the reconciler never raises for user errors
            log.exception("reconcile of %s failed", name)
            tracked.problem = f"{type(exc).__name__}: {exc}"
            self.on_event(name, _event("Warning", "ReconcileError", f"{type(exc).__name__}: {exc}"))
            tracked.due = time.monotonic() + (self.interval or tracked.manifest.parsed.interval)
            self.on_change()

    async def wait_executions(self) -> None:
        while True:
            alive = [t for t in self._threads.values() if t.is_alive()]
            if not alive:
                return
            await asyncio.to_thread(alive[0].join, 0.5)

    async def shutdown(self) -> None:
        """Stop orchestrating: running steps keep running and their executions resume next time."""
        self._stopping.set()
        for tracked in self._tracked.values():
            if tracked.task is not None:
                tracked.task.cancel()
        tasks = [t.task for t in self._tracked.values() if t.task is not None]
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        await self.wait_executions()

    def stop(self) -> None:
        """Thread-safe: ask the execution threads to let go (used on Ctrl-C)."""
        self._stopping.set()

    # -- observing -------------------------------------------------------------------------

    def statuses(self) -> dict[str, dict[str, Any]]:
        out = {}
        for name, tracked in self._tracked.items():
            with tracked.lock:
                out[name] = copy.deepcopy(tracked.state.status)
        return out

    def history(self, name: str) -> list[dict[str, Any]]:
        tracked = self._tracked[name]
        with tracked.lock:
            return copy.deepcopy(tracked.state.history)

    def rows(self) -> list[Row]:
        rows = []
        for name, tracked in sorted(self._tracked.items()):
            with tracked.lock:
                status = copy.deepcopy(tracked.state.status)
                created = _parse_ts(tracked.state.created_at)
            ready = get_condition(status.get("conditions"), READY) or {}
            last = status.get("lastExecution") or {}
            message = tracked.problem or ""
            if not message and ready.get("status") != "True" and ready.get("message"):
                message = f"{ready.get('reason')}: {ready['message']}"
            if not message and last.get("phase") == "Failed":
                failed = [s for s in status.get("steps") or [] if s.get("phase") == "Failed"]
                if failed:
                    message = f"step {failed[0]['name']}: {failed[0].get('failureReason', 'failed')}"
            if tracked.manifest.parsed.suspend:
                message = message or "suspended"
            rows.append(Row(name=name, revision=(status.get("summary") or {}).get("revision") or "",
                            ready=ready.get("status") or ("Unknown" if status else ""),
                            phase=last.get("phase") or "", steps=(status.get("summary") or {}).get("steps") or "",
                            last_run=_parse_ts(last.get("startedAt")), created=created, message=message))
        for problem in self.problems:
            rows.append(Row(name=problem.name or f"({problem.path.name})", revision="", ready="False", phase="",
                            steps="", last_run=None, created=None, message=str(problem)))
        return rows

    def healthy(self) -> bool:
        """``--once``'s verdict: no bad manifest, every pipeline Ready, every execution run Succeeded."""
        if self.problems:
            return False
        for status in self.statuses().values():
            ready = get_condition(status.get("conditions"), READY) or {}
            if ready.get("status") != "True":
                return False
        if any(t.problem for t in self._tracked.values()):
            return False
        return all(report.phase == "Succeeded" for report in self.reports)

    def pipeline_name(self, name: str, execution_id: str | None = None) -> str | None:
        """The pipeline name in the store (from the user's code) of ``name``'s execution."""
        return self._pipeline_name(self._tracked[name], execution_id)

    def backend(self, name: str) -> Any:
        """The backend ``name``'s executions run on."""
        return self.reconciler.backend_for(self._tracked[name].manifest.parsed)


def _resolved_spec(manifest: Manifest) -> dict[str, Any]:
    """The spec with a local ``source.url`` made absolute: relative paths are relative to
    the manifest's file, which the reconciler (given only the spec) cannot know."""
    spec = copy.deepcopy(dict(manifest.spec))
    spec["source"] = {**spec["source"], "url": manifest.parsed.url}
    return spec


def _event(type_: str, reason: str, message: str) -> Any:
    from stepflow.gitops.reconciler import Event

    return Event(type=type_, reason=reason, message=message)
