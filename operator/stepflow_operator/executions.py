"""One ``PipelineExecution``: run it on the Pipeline's backend and mirror it onto the resources.

The execution runs in a :class:`~stepflow.gitops.execution_runner.ExecutionRunner` thread
(shared with ``stepflow up``); its news hop onto the event loop, where the daemon coroutine
turns the latest state into a status patch on the execution, at most every
``status_interval`` seconds, and onto the owning Pipeline when this execution is its latest.
The shapes come from :mod:`stepflow.gitops.execution_status`, as ``stepflow up``'s do.

Everything the run needs is in the store, so nothing is lost when the operator stops: the
thread lets go without touching the steps, and the next operator's daemon runs the
execution again, which finds the steps still running and the results of those that ended,
and runs no step twice.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from typing import Any

import kopf

from stepflow import timefmt
from stepflow.backends.base import Backend
from stepflow.engine import ExecutionState
from stepflow.errors import StepflowError
from stepflow.gitops import conditions as cond
from stepflow.gitops import reasons
from stepflow.gitops.execution_runner import ExecutionRunner
from stepflow.gitops.execution_status import (
    RUNNING_PHASES,
    TERMINAL_PHASES,
    execution_conditions,
    execution_status,
    pipeline_status,
)
from stepflow.gitops.spec import PipelineSpec
from stepflow_operator.context import Context
from stepflow_operator.kube import reference
from stepflow_operator.metrics import ExecutionMetrics
from stepflow_operator.patches import merge_patch
from stepflow_operator.settings import EXECUTIONS, PIPELINES

#: How often a Pending execution looks again for its Pipeline's first definition.
DEFINITION_POLL = 2.0


class ExecutionRun:
    """An :class:`ExecutionRunner` whose news arrive on the event loop as two asyncio events."""

    def __init__(self, backend: Backend, pipeline_name: str, execution_id: str,
                 loop: asyncio.AbstractEventLoop, metrics: ExecutionMetrics) -> None:
        self.metrics = metrics
        self.changed = asyncio.Event()
        self.finished = asyncio.Event()
        self.runner = ExecutionRunner(
            backend, pipeline_name, execution_id,
            on_change=lambda _state: loop.call_soon_threadsafe(self.changed.set),
            on_finish=lambda _runner: loop.call_soon_threadsafe(self.finished.set))
        self.execution_id = execution_id

    def start(self) -> None:
        self.runner.start()

    def leave(self) -> None:
        self.runner.leave()

    async def stop(self) -> None:
        """Stop the execution itself: its running steps are stopped, it ends as Stopped."""
        await asyncio.to_thread(self.runner.stop_execution)


class _Writer:
    """Patches one execution's ``.status`` with what changed since the last write."""

    def __init__(self, ctx: Context, namespace: str, name: str, status: Mapping[str, Any]) -> None:
        self.ctx, self.namespace, self.name = ctx, namespace, name
        self.status: dict[str, Any] = dict(status)

    async def write(self, changes: Mapping[str, Any]) -> None:
        new = {**self.status, **changes}
        patch = merge_patch(self.status, new)
        if patch:
            stored = await self.ctx.kube.patch_status(EXECUTIONS, self.namespace, self.name, patch)
            self.status = dict((stored or {}).get("status") or new)


async def drive(ctx: Context, body: kopf.Body, stopped: kopf.DaemonStopped, logger: kopf.Logger) -> None:
    """The daemon of a PipelineExecution that has not ended yet."""
    meta, spec = body["metadata"], body.get("spec") or {}
    namespace, name = meta["namespace"], meta["name"]
    pipeline_ref = spec["pipelineRef"]["name"]
    writer = _Writer(ctx, namespace, name, body.get("status") or {})
    resumed = writer.status.get("phase") in RUNNING_PHASES

    target = await _target(ctx, body, writer, stopped)
    if target is None:
        return
    pipeline, pspec, definition = target
    backend = ctx.reconciler.targets.backend_for(pspec)
    pipeline_name = definition["pipelineName"]
    parameters = {**pspec.trigger.parameters, **(spec.get("parameters") or {})}
    try:
        state = await asyncio.to_thread(backend.create_execution, pipeline_name, parameters=parameters,
                                        execution_id=name)
    except StepflowError as exc:
        await _fail(ctx, body, writer, exc.reason, f"the execution could not be created: {exc}")
        return

    def result_uri(step: str) -> str:
        return backend.result_uri(pipeline_name, name, step)

    revision = writer.status.get("revision") or definition.get("revision")
    fixed = {"revision": revision, "definitionDigest": writer.status.get("definitionDigest") or definition["digest"],
             "definitionUri": writer.status.get("definitionUri") or definition.get("uri"),
             "pipelineName": pipeline_name, "observedGeneration": meta.get("generation"), "message": None,
             "summary": {"revision": (revision or "").rsplit(":", 1)[-1][:7]}}
    started = timefmt.seconds(state.started_at)
    recorded = (pipeline.get("status") or {}).get("lastExecution") or {}
    ctx.runs.claim_latest(namespace, pipeline_ref, name, started,
                          (recorded.get("startedAt") or "", recorded["name"]) if recorded.get("name") else None)

    if resumed:
        logger.info("resuming execution %s of %s (%s)", name, pipeline_name, state.status)
    run = ExecutionRun(backend, pipeline_name, name, asyncio.get_running_loop(), ExecutionMetrics(backend.name))
    ctx.runs.add(namespace, pipeline_ref, name, run)
    try:
        await _mirror(ctx, body, writer, fixed, state, result_uri, pipeline_ref, run.metrics)
        if not resumed and not state.terminal:
            _event_both(body, pipeline, "Normal", reasons.EXECUTION_STARTED,
                        f"Execution {name} of {pipeline_name} started ({len(state.steps)} steps, {revision})")
        run.start()
        await _follow(ctx, body, writer, fixed, run, result_uri, pipeline_ref, stopped, logger)
    finally:
        ctx.runs.remove(namespace, pipeline_ref, name)
        run.metrics.close()
    if writer.status.get("phase") in TERMINAL_PHASES:
        await prune_history(ctx, namespace, pipeline_ref, pspec.history_limit, logger)


async def prune_history(ctx: Context, namespace: str, pipeline: str, limit: int, logger: kopf.Logger) -> None:
    """Keep the newest ``limit`` executions of a Pipeline; unfinished ones are never deleted."""
    executions = await ctx.kube.executions_of(namespace, pipeline)
    excess = len(executions) - limit
    for execution in executions:
        if excess <= 0:
            break
        if (execution.get("status") or {}).get("phase") in TERMINAL_PHASES:
            await ctx.kube.delete(EXECUTIONS, namespace, execution["metadata"]["name"])
            logger.info("pruned PipelineExecution %s (historyLimit %d)", execution["metadata"]["name"], limit)
            excess -= 1


async def _follow(ctx: Context, body: kopf.Body, writer: _Writer, fixed: dict[str, Any], run: ExecutionRun,
                  result_uri: Any, pipeline_ref: str, stopped: kopf.DaemonStopped, logger: kopf.Logger) -> None:
    name = body["metadata"]["name"]
    stopping = False
    while True:
        waiters: list[asyncio.Future[Any]] = [asyncio.ensure_future(run.changed.wait()),
                                              asyncio.ensure_future(run.finished.wait())]
        if not stopping:
            waiters.append(asyncio.ensure_future(stopped.wait()))
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        for waiter in waiters:
            waiter.cancel()
        if run.finished.is_set():
            break
        if stopped and not stopping:
            stopping = True
            if stopped.reason is not None and kopf.DaemonStoppingReason.RESOURCE_DELETED in stopped.reason:
                logger.info("PipelineExecution %s deleted: stopping it", name)
                await run.stop()
            else:  # the operator exits (or the resource stops matching): leave the steps running
                run.leave()
        run.changed.clear()
        latest = run.runner.latest
        if latest is not None and not latest.terminal:
            await _mirror(ctx, body, writer, fixed, latest, result_uri, pipeline_ref, run.metrics)
            await asyncio.sleep(ctx.config.status_interval)  # coalesce a burst of step updates
    error = run.runner.error
    if error is not None:
        logger.error("execution %s: %s", name, error)
        await _fail(ctx, body, writer, getattr(error, "reason", "ExecutionError"),
                    f"the execution could not run: {error}")
        return
    state = run.runner.latest
    if state is None or not state.terminal:
        return  # left to the next operator
    await _mirror(ctx, body, writer, fixed, state, result_uri, pipeline_ref, run.metrics, final=True)


async def _mirror(ctx: Context, body: kopf.Body, writer: _Writer, fixed: Mapping[str, Any], state: ExecutionState,
                  result_uri: Any, pipeline_ref: str, metrics: ExecutionMetrics, final: bool = False) -> None:
    """Write the state on the execution and, if it is the latest, on its Pipeline.

    The terminal phase is written last: it ends this daemon (kopf's ``when`` filter), so
    the Pipeline's summary and the Event go first.
    """
    meta = body["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    metrics.update(state.status, state)
    mirrored = execution_status(state, result_uri)
    status = {**mirrored, **fixed, "summary": {**mirrored["summary"], **fixed["summary"]}}
    status["conditions"] = execution_conditions(writer.status.get("conditions"), state, meta.get("generation"))
    if ctx.runs.is_latest(namespace, pipeline_ref, name):
        await ctx.kube.patch_status(PIPELINES, namespace, pipeline_ref, pipeline_status(
            name, state, mirrored["steps"], revision=fixed.get("revision"),
            definition_digest=fixed.get("definitionDigest")))
    if final:
        metrics.finished(state.status)
        type_ = "Normal" if state.status == "Succeeded" else "Warning"
        why = f": {state.failure_reason}" if state.failure_reason else ""
        _event_both(body, None, type_, f"Execution{state.status}",
                    f"Execution {name} {state.status.lower()} ({status['summary']['steps']} steps done, "
                    f"{status['summary']['duration']}){why}", pipeline_ref=pipeline_ref)
    await writer.write(status)


async def _target(ctx: Context, body: kopf.Body, writer: _Writer, stopped: kopf.DaemonStopped
                  ) -> tuple[dict[str, Any], PipelineSpec, dict[str, Any]] | None:
    """The owning Pipeline, its parsed spec and the definition to run; None when there is none."""
    meta, spec = body["metadata"], body.get("spec") or {}
    namespace, ref = meta["namespace"], spec["pipelineRef"]["name"]
    while not stopped:
        pipeline = await ctx.kube.get(PIPELINES, namespace, ref)
        if pipeline is None:
            await _fail(ctx, body, writer, "PipelineNotFound",
                        f"spec.pipelineRef names the Pipeline {ref!r}, which does not exist in namespace "
                        f"{namespace!r}; create the Pipeline first, or fix the name (a PipelineExecution's "
                        "spec cannot change: delete this one and create another)")
            return None
        try:
            pspec = PipelineSpec.from_manifest(pipeline.get("spec") or {}, name=ref, namespace=namespace)
        except StepflowError as exc:
            await _fail(ctx, body, writer, exc.reason, f"the Pipeline {ref!r} has an invalid spec: {exc}")
            return None
        definition = (pipeline.get("status") or {}).get("definition") or {}
        if definition.get("digest") and definition.get("pipelineName"):
            problem = _revision_problem(spec.get("revision"), definition, writer.status)
            if problem:
                await _fail(ctx, body, writer, "RevisionNotAvailable", problem)
                return None
            return pipeline, pspec, definition
        await writer.write({"phase": "Pending", "message": f"waiting for the Pipeline {ref!r} to publish its "
                                                           "first definition (see its Ready condition)"})
        await _wait_stopped(stopped, DEFINITION_POLL)
    return None


def _revision_problem(wanted: str | None, definition: Mapping[str, Any], status: Mapping[str, Any]) -> str | None:
    """Why ``spec.revision`` cannot run, or None. Only the current definition can run today."""
    if not wanted or status.get("executionId"):
        return None  # default, or already created with its definition: resume it whatever came since
    current = definition.get("revision") or ""
    commit = current.rsplit(":", 1)[-1]
    bare = wanted.rsplit(":", 1)[-1]
    if wanted == current or (re.fullmatch(r"[0-9a-f]{7,40}", bare) and commit.startswith(bare)):
        return None
    return (f"spec.revision {wanted!r} is not the Pipeline's current definition ({current}); the local "
            "backend runs only the current definition: leave spec.revision empty, or push/pin that "
            "revision on the Pipeline first")


async def _wait_stopped(stopped: kopf.DaemonStopped, timeout: float) -> None:
    try:
        await asyncio.wait_for(stopped.wait(), timeout)
    except TimeoutError:
        pass


async def _fail(ctx: Context, body: kopf.Body, writer: _Writer, reason: str, message: str) -> None:
    """The execution cannot run: Failed with why, an Event, and the terminal phase written last."""
    meta = body["metadata"]
    kopf.event(body, type="Warning", reason=reason, message=message)
    now = timefmt.seconds()
    await writer.write({
        "phase": "Failed", "failureReason": reason, "message": message, "finishedAt": now,
        "startedAt": writer.status.get("startedAt") or now,
        "conditions": cond.mark_stalled(writer.status.get("conditions"), observed_generation=meta.get("generation"),
                                        reason=reason, message=message, timestamp=now),
    })


def _event_both(body: kopf.Body, pipeline: Mapping[str, Any] | None, type_: str, reason: str, message: str,
                pipeline_ref: str | None = None) -> None:
    """Post on the execution and on its Pipeline, where people look first."""
    meta = body["metadata"]
    kopf.event(body, type=type_, reason=reason, message=message)
    if pipeline is not None:
        pmeta = pipeline["metadata"]
        target = reference(PIPELINES, pmeta["namespace"], pmeta["name"], pmeta.get("uid"))
    else:
        owner = next((o for o in meta.get("ownerReferences") or () if o.get("kind") == "Pipeline"), None)
        target = reference(PIPELINES, meta["namespace"], pipeline_ref or "", owner.get("uid") if owner else None)
    # kopf posts about any object mapping (it walks dicts); its annotation admits only kopf.Body.
    kopf.event(target, type=type_, reason=reason, message=message)  # type: ignore[arg-type]
