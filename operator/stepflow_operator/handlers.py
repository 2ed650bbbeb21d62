"""The kopf handlers: thin. Run with ``kopf run -m stepflow_operator.handlers`` (what the
chart does) or ``python -m stepflow_operator``.

* ``Pipeline``: a daemon per resource runs its reconcile loop (:mod:`.pipelines`); every
  watch event wakes it when the generation or the reconcile-request annotation changed.
* ``Receiver``: a daemon per resource keeps its webhook path registered with the receiver
  server (:mod:`.receiver`), started with the operator on its own port.
* ``PipelineExecution``: a daemon per execution that has not ended runs it on the backend
  and mirrors its steps (:mod:`.executions`). Ended executions match no handler, so they
  cost nothing and carry no finalizer.

Handlers return nothing: kopf stores nothing under handler ids in ``.status``; all status
keys are ours and declared in the CRDs.
"""

from __future__ import annotations

import asyncio
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import kopf

from stepflow.gitops.execution_status import TERMINAL_PHASES
from stepflow_operator import executions, monitoring, pipelines, receiver
from stepflow_operator.context import Context
from stepflow_operator.settings import (
    EXECUTIONS,
    GROUP,
    PIPELINES,
    RECEIVERS,
    VERSION,
    WATCH_NAMESPACES_ENV,
    OperatorConfig,
    QuietWakeups,
    configure_kopf,
    split_namespaces,
)

WAKE_HANDLER = "wake"
RECEIVER_WAKE_HANDLER = "receiver-wake"


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, logger: kopf.Logger, **_: Any) -> None:
    config = OperatorConfig.from_env()
    configure_kopf(settings, split_namespaces(os.environ.get(WATCH_NAMESPACES_ENV, "")))
    logging.getLogger("kopf.objects").addFilter(QuietWakeups((WAKE_HANDLER, RECEIVER_WAKE_HANDLER)))
    # git, builds' process waits, S3 and API calls all go through asyncio.to_thread.
    asyncio.get_running_loop().set_default_executor(
        ThreadPoolExecutor(max_workers=config.workers, thread_name_prefix="stepflow"))
    ctx = memo["ctx"] = Context.create(config)
    if config.metrics_address:
        monitoring.serve(config.metrics_address)  # already serving when started by __main__
    if config.receiver_address:
        server = memo["receiver_server"] = receiver.Server(ctx.kube, ctx.receivers)
        await server.start(config.receiver_address)
    monitoring.ACTIVE.set()
    logger.info("stepflow operator: work dir %s, default store %s, S3 endpoint %s, integrity key %s, "
                "metrics %s, receiver %s", config.work_dir, config.default_s3_root_uri or "(from the stepflow config)",
                config.s3_endpoint_url or "(AWS)", "set" if config.integrity_key else "not set",
                config.metrics_address or "off", config.receiver_address or "off")


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    server = memo.get("receiver_server")
    if server is not None:
        await server.stop()
    ctx = memo.get("ctx")
    if ctx is not None:
        ctx.close()


# A stop request is noticed between reconciles; one mid-build is cancelled after 10 s.
@kopf.daemon(GROUP, VERSION, PIPELINES, id="reconcile", cancellation_backoff=10.0, cancellation_timeout=20.0)
async def reconcile_pipeline(body: kopf.Body, memo: kopf.Memo, stopped: kopf.DaemonStopped,
                             logger: kopf.Logger, **_: Any) -> None:
    await pipelines.run(memo["ctx"], body, memo, stopped, logger)


# async: it runs on the loop, where the daemon's asyncio.Event may be set (sync handlers run
# in kopf's thread pool).
@kopf.on.event(GROUP, VERSION, PIPELINES, id=WAKE_HANDLER)
async def pipeline_changed(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    pipelines.notice(body, memo)


def _not_ended(status: kopf.Status, **_: Any) -> bool:
    return status.get("phase") not in TERMINAL_PHASES


# The execution thread notices a stop request within half a second.
@kopf.daemon(GROUP, VERSION, EXECUTIONS, id="execute", when=_not_ended, cancellation_backoff=30.0,
             cancellation_timeout=30.0, backoff=10.0)
async def run_execution(body: kopf.Body, memo: kopf.Memo, stopped: kopf.DaemonStopped,
                        logger: kopf.Logger, **_: Any) -> None:
    await executions.drive(memo["ctx"], body, stopped, logger)


@kopf.daemon(GROUP, VERSION, RECEIVERS, id="receive", cancellation_timeout=5.0)
async def serve_receiver(body: kopf.Body, memo: kopf.Memo, stopped: kopf.DaemonStopped,
                         logger: kopf.Logger, **_: Any) -> None:
    ctx = memo["ctx"]
    await receiver.run(ctx.kube, ctx.receivers, body, memo, stopped, logger)


@kopf.on.event(GROUP, VERSION, RECEIVERS, id=RECEIVER_WAKE_HANDLER)
async def receiver_changed(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    receiver.notice(body, memo)
