"""The embedded GitOps loop behind ``stepflow up``: the operator's reconcile, without a cluster.

What the API server and kopf give the operator, this module does for itself:

* **the resources** are ``Pipeline`` manifests in a folder (:mod:`stepflow.gitops.manifests`),
  re-read when the files change; a spec change bumps a generation, as the API server does;
* **the status** lives in memory and in the store (:mod:`stepflow.gitops.up_state`), so a
  restart neither rebuilds nor re-runs what is current;
* **the timers**: each pipeline is reconciled every ``spec.source.interval``;
* **the executions** the reconciler asks for run on the Pipeline's backend, each in an
  :class:`~stepflow.gitops.execution_runner.ExecutionRunner` thread (the operator's too),
  mirrored with :mod:`stepflow.gitops.execution_status` (the operator's too).

The reconciler core owns everything it reports in ``Outcome.status``; the executions own
``lastExecution``, ``steps`` and ``summary.steps``. Nothing here prints: callers observe
through ``on_change``/``on_event`` and read :meth:`EmbeddedLoop.rows`.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stepflow.backends.base import Backend
from stepflow.engine import SUCCEEDED, ExecutionState
from stepflow.errors import StepflowError
from stepflow.gitops import reasons
from stepflow.gitops.conditions import READY, get_condition
from stepflow.gitops.execution_runner import ExecutionRunner
from stepflow.gitops.execution_status import TERMINAL_PHASES, pipeline_status, step_entries
from stepflow.gitops.manifests import Manifest, ManifestProblem, discover, manifest_files
from stepflow.gitops.reconciler import Event, ExecutionRequest, Reconciler
from stepflow.gitops.up_state import PipelineState, StateStore, apply_execution, merge_status
from stepflow.gitops.up_table import Row, problem_row, row
from stepflow.storage import ObjectStore

log = logging.getLogger(__name__)


# -- what callers see ------------------------------------------------------------------------


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

    def task_done(self, _task: asyncio.Task[Any]) -> None:
        """``task``'s done callback: the pipeline may be reconciled again."""
        self.task = None


# -- the loop --------------------------------------------------------------------------------


class EmbeddedLoop:
    """Reconciles every ``Pipeline`` manifest under ``directory`` against ``reconciler``.

    ``reconciler`` is a :class:`stepflow.gitops.reconciler.Reconciler` (built by the caller,
    so it chooses the work dir, sandbox settings, key and default store). ``interval``
    overrides every manifest's ``spec.source.interval``.
    """

    def __init__(self, directory: str | Path, *, reconciler: Reconciler, state_store: ObjectStore,
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
        self._runners: dict[str, ExecutionRunner] = {}
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
            assert outcome.execution is not None  # what start means
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

    def _backend(self, tracked: _Tracked) -> Backend:
        return self.reconciler.targets.backend_for(tracked.manifest.parsed)

    async def _start_execution(self, tracked: _Tracked, request: ExecutionRequest) -> None:
        name = tracked.manifest.name
        backend = self._backend(tracked)
        try:
            state = await asyncio.to_thread(backend.create_execution, request.pipeline_name,
                                            parameters=dict(request.parameters or {}),
                                            execution_id=request.name)
        except StepflowError as exc:
            tracked.problem = f"{exc.reason}: {exc.message}"
            self.on_event(name, Event("Warning", reasons.EXECUTION_FAILED,
                                      f"execution {request.name} could not start: {exc.message}"))
            self.on_change()
            return
        tracked.problem = None
        with tracked.lock:
            entry = {"name": request.name, "pipelineName": request.pipeline_name, "revision": request.revision,
                     "definitionDigest": request.definition_digest}
            tracked.state.history = [entry, *[h for h in tracked.state.history if h.get("name") != request.name]]
            del tracked.state.history[tracked.manifest.parsed.history_limit:]
            tracked.state.status["lastExecution"] = {"name": request.name}
            self._apply_execution(tracked, backend, request.pipeline_name, state)
        self.on_event(name, Event("Normal", reasons.EXECUTION_STARTED,
                                  f"execution {request.name} started ({request.trigger}, {request.revision})"))
        self._run_in_thread(tracked, backend, request.pipeline_name, request.name)

    def resume_unfinished(self) -> None:
        """Pick up executions an earlier ``up`` left running (their state is in the store)."""
        for tracked in self._tracked.values():
            last = tracked.state.status.get("lastExecution") or {}
            pipeline_name = self._pipeline_name(tracked, last.get("name"))
            if last.get("name") and last.get("phase") not in TERMINAL_PHASES \
                    and last["name"] not in self._runners and pipeline_name:
                self._run_in_thread(tracked, self._backend(tracked), pipeline_name, last["name"])

    def _run_in_thread(self, tracked: _Tracked, backend: Backend, pipeline_name: str, execution_id: str) -> None:
        def changed(state: ExecutionState) -> None:
            with tracked.lock:
                self._apply_execution(tracked, backend, pipeline_name, state)
            self.on_change()

        runner = ExecutionRunner(backend, pipeline_name, execution_id, on_change=changed,
                                 on_finish=lambda r: self._finished(tracked, r))
        self._runners[execution_id] = runner
        runner.start()

    def _finished(self, tracked: _Tracked, runner: ExecutionRunner) -> None:
        """From the runner's thread, when it ends: the execution is over, could not run, or was left."""
        name, execution_id = tracked.manifest.name, runner.execution_id
        if runner.error is not None:
            message = getattr(runner.error, "message", None) or f"{type(runner.error).__name__}: {runner.error}"
            self.on_event(name, Event("Warning", reasons.EXECUTION_FAILED, f"execution {execution_id}: {message}"))
            with self._reports_lock:
                self.reports.append(ExecutionReport(name, execution_id, "Failed", failure_reason=message))
            self.on_change()
            return
        final = runner.latest
        if final is None or not final.terminal:
            return  # we are stopping; the execution resumes next time
        with self._reports_lock:
            self.reports.append(ExecutionReport(name, execution_id, final.status, final.failure_reason))
        kind = "Normal" if final.status == SUCCEEDED else "Warning"
        suffix = f": {final.failure_reason}" if final.failure_reason else ""
        self.on_event(name, Event(kind, f"Execution{final.status}", f"execution {execution_id} {final.status}{suffix}"))
        self.on_change()

    def _apply_execution(self, tracked: _Tracked, backend: Backend, pipeline_name: str,
                         state: ExecutionState) -> None:
        """Mirror an execution's state onto the status (caller holds ``tracked.lock``)."""
        record = next((h for h in tracked.state.history if h.get("name") == state.execution_id), {})
        steps = step_entries(state, lambda step: backend.result_uri(pipeline_name, state.execution_id, step))
        owned = pipeline_status(state.execution_id, state, steps, revision=record.get("revision"),
                                definition_digest=record.get("definitionDigest"))
        apply_execution(tracked.state, state.execution_id, owned)
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
                        tracked.task.add_done_callback(tracked.task_done)
                waits = [t.due - now for t in self._tracked.values() if t.task is None]
                timeout = min([1.0, *waits]) if waits else 1.0
                try:
                    await asyncio.wait_for(stop.wait(), timeout=max(timeout, 0.05))
                except TimeoutError:
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
            self.on_event(name, Event("Warning", reasons.RECONCILE_ERROR, f"{type(exc).__name__}: {exc}"))
            tracked.due = time.monotonic() + (self.interval or tracked.manifest.parsed.interval)
            self.on_change()

    async def wait_executions(self) -> None:
        while True:
            alive = [r for r in self._runners.values() if r.alive]
            if not alive:
                return
            await asyncio.to_thread(alive[0].join, 0.5)

    async def shutdown(self) -> None:
        """Stop orchestrating: running steps keep running and their executions resume next time."""
        self.stop()
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
        for runner in list(self._runners.values()):
            runner.leave()

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
                created_at = tracked.state.created_at
            rows.append(row(name, status, created_at=created_at, problem=tracked.problem,
                            suspended=tracked.manifest.parsed.suspend))
        for problem in self.problems:
            rows.append(problem_row(problem.name or f"({problem.path.name})", str(problem)))
        return rows

    def healthy(self) -> bool:
        """``--once``'s verdict: no bad manifest, every pipeline Ready, every execution run
        Succeeded, and every pipeline's latest execution Succeeded (one that failed in an
        earlier pass still fails the verdict, as the table shows it)."""
        if self.problems:
            return False
        for status in self.statuses().values():
            ready = get_condition(status.get("conditions"), READY) or {}
            if ready.get("status") != "True":
                return False
            last = status.get("lastExecution") or {}
            if last.get("phase") and last["phase"] != SUCCEEDED:
                return False
        if any(t.problem for t in self._tracked.values()):
            return False
        return all(report.phase == "Succeeded" for report in self.reports)

    def pipeline_name(self, name: str, execution_id: str | None = None) -> str | None:
        """The pipeline name in the store (from the user's code) of ``name``'s execution."""
        return self._pipeline_name(self._tracked[name], execution_id)

    def backend(self, name: str) -> Backend:
        """The backend ``name``'s executions run on."""
        return self._backend(self._tracked[name])


def _resolved_spec(manifest: Manifest) -> dict[str, Any]:
    """The spec with a local ``source.url`` made absolute: relative paths are relative to
    the manifest's file, which the reconciler (given only the spec) cannot know."""
    spec = copy.deepcopy(dict(manifest.spec))
    spec["source"] = {**spec["source"], "url": manifest.parsed.url}
    return spec
