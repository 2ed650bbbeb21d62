"""One ``Pipeline``'s loop: reconcile, write status, post events, create executions, wait.

The loop lives in a kopf daemon, one per Pipeline. It reconciles at once when it starts,
then every ``spec.source.interval`` (the reconciler's ``requeue_after``), and as soon as the
generation or the ``stepflow.dev/reconcile-requested-at`` annotation changes: kopf's
watch-event handler calls :func:`notice`, which wakes the loop. One loop per resource means
one reconcile at a time per Pipeline, with no locks.

The status is written as a JSON merge patch of what the reconcile changed, so the keys the
execution daemons own (``lastExecution``, ``steps``, ``summary.steps``) are never touched.
"""

from __future__ import annotations

import asyncio
import copy
import time
from collections.abc import Mapping
from typing import Any

import kopf

from stepflow.errors import StepflowError
from stepflow.gitops import reasons
from stepflow.gitops.gitauth import GitCredentials
from stepflow.gitops.reconciler import ExecutionRequest
from stepflow_operator import metrics
from stepflow_operator.context import Context
from stepflow_operator.patches import merge_patch
from stepflow_operator.settings import PIPELINES, RECONCILE_ANNOTATION

#: After a bug in the operator itself (not the user's input), wait this long before retrying.
ERROR_BACKOFF = 30.0


def _wake_event(memo: kopf.Memo) -> asyncio.Event:
    if "wake" not in memo:
        memo["wake"] = asyncio.Event()
    return memo["wake"]


def _trigger_key(body: Mapping[str, Any]) -> tuple[Any, Any]:
    meta = body.get("metadata") or {}
    return meta.get("generation"), (meta.get("annotations") or {}).get(RECONCILE_ANNOTATION)


def notice(body: Mapping[str, Any], memo: kopf.Memo) -> None:
    """A watch event arrived: wake the loop if the spec or the reconcile request changed.

    Status patches (ours) change neither, so they do not cause a reconcile.
    """
    key = _trigger_key(body)
    if memo.get("seen") != key:
        memo["seen"] = key
        _wake_event(memo).set()


async def run(ctx: Context, body: kopf.Body, memo: kopf.Memo, stopped: kopf.DaemonStopped,
              logger: kopf.Logger) -> None:
    """The daemon: until the resource is deleted or the operator exits."""
    namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
    wake = _wake_event(memo)
    memo["seen"] = _trigger_key(body)
    try:
        while not stopped:
            wake.clear()
            began = time.monotonic()
            try:
                delay = await _reconcile(ctx, body, memo, logger)
            except Exception as exc:  # noqa: BLE001 - one Pipeline's bug must not stop the loop
                metrics.reconciled(time.monotonic() - began, "error")
                logger.exception("reconcile of Pipeline %s/%s failed", namespace, name)
                kopf.event(body, type="Warning", reason=reasons.RECONCILE_ERROR,
                           message=f"the operator failed to reconcile: {type(exc).__name__}: {exc}; "
                                   f"retrying in {ERROR_BACKOFF:.0f}s (see the operator log)")
                delay = ERROR_BACKOFF
            await _wait(wake, stopped, delay)
    finally:
        if stopped.reason is not None and kopf.DaemonStoppingReason.RESOURCE_DELETED in stopped.reason:
            ctx.conditions.forget(namespace, name)
            for execution in ctx.runs.of(namespace, name):
                logger.info("Pipeline %s/%s deleted: stopping execution %s", namespace, name,
                            execution.execution_id)
                await execution.stop()
            await ctx.reconciler.forget(name, namespace=namespace)


async def _wait(wake: asyncio.Event, stopped: kopf.DaemonStopped, timeout: float | None) -> None:
    waiters = [asyncio.ensure_future(wake.wait()), asyncio.ensure_future(stopped.wait())]
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


async def _reconcile(ctx: Context, body: kopf.Body, memo: kopf.Memo, logger: kopf.Logger) -> float | None:
    """One pass; returns how long to wait before the next one (None: until woken)."""
    meta = body["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    spec = copy.deepcopy(dict(body.get("spec") or {}))
    generation = meta.get("generation") or 1
    requested_at = (meta.get("annotations") or {}).get(RECONCILE_ANNOTATION)
    # Our last write is fresher than the watch's copy when the event has not arrived yet.
    status = memo.get("status") or copy.deepcopy(dict(body.get("status") or {}))
    written = {"status": status}

    async def write(new: dict[str, Any]) -> bool:
        """Patch what changed since our last write; False when the Pipeline is gone."""
        patch = merge_patch(written["status"], new)
        if patch:
            stored = await ctx.kube.patch_status(PIPELINES, namespace, name, patch)
            if stored is None:  # deleted meanwhile; the daemon is being stopped
                return False
            memo["status"] = stored.get("status") or {}
            # The next patch is a diff of our own views, never of the stored status: the keys
            # execution daemons write meanwhile are theirs and must not be reverted.
            written["status"] = new
        return True

    async def progress(current: dict[str, Any]) -> None:
        # Reconciling=True while a fetch, build or publish is under way; a failed write only
        # delays what the final patch says anyway.
        try:
            await write(current)
        except Exception:  # noqa: BLE001 - the reconcile goes on; the end of it is written again
            logger.warning("could not write the progress of Pipeline %s/%s", namespace, name, exc_info=True)

    async with ctx.reconcile_slots:
        began = time.monotonic()
        credentials = await _credentials(ctx, namespace, spec)
        outcome = await ctx.reconciler.reconcile(name, spec, status, generation=generation,
                                                 credentials=credentials, requested_at=requested_at,
                                                 namespace=namespace, progress=progress)
        metrics.reconciled(time.monotonic() - began, metrics.reconcile_result(outcome.status.get("conditions")))
    ctx.conditions.set(namespace, name, outcome.status.get("conditions"))

    if not await write(outcome.status):
        return None
    for event in outcome.events:
        kopf.event(body, type=event.type, reason=event.reason, message=event.message)
    if outcome.execution is not None:
        await _create_execution(ctx, body, outcome.execution, logger)
    return outcome.requeue_after


async def _credentials(ctx: Context, namespace: str, spec: Mapping[str, Any]
                       ) -> GitCredentials | StepflowError | None:
    """The git credentials of ``spec.source.secretRef``, or the error saying why there are none
    (the reconciler reports it as the source's failure)."""
    secret_name = ((spec.get("source") or {}).get("secretRef") or {}).get("name")
    if not secret_name:
        return None
    data = await ctx.kube.secret_data(namespace, secret_name)
    if data is None:
        return StepflowError(
            f"spec.source.secretRef names the Secret {secret_name!r}, which does not exist in namespace "
            f"{namespace!r}; create it (kubectl -n {namespace} create secret generic {secret_name} "
            "--from-literal=username=... --from-literal=password=...) or fix the name",
            reason=reasons.SECRET_NOT_FOUND)
    try:
        return GitCredentials.from_secret_data(data, secret_name=secret_name)
    except StepflowError as exc:
        return exc


async def _create_execution(ctx: Context, body: kopf.Body, request: ExecutionRequest,
                            logger: kopf.Logger) -> None:
    meta = body["metadata"]
    created = await ctx.kube.create_execution(body, request.name, revision=request.revision,
                                              parameters=request.parameters, trigger=request.trigger)
    if created:
        logger.info("created PipelineExecution %s/%s (%s, %s)", meta["namespace"], request.name,
                    request.trigger, request.revision)
