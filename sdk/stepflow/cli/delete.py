"""``stepflow delete execution|pipeline``: remove what the store keeps, as ``argo delete``.

An execution is its folder (``<pipeline>/<execution>/``: state, results, exceptions, attempt
records, logs), its summary and this machine's run folder. A pipeline is everything under
``<pipeline>/``: artifacts, definitions, records and every execution. Unfinished executions
are never deleted from under their orchestrator: stop them first.
"""

from __future__ import annotations

import contextlib
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from stepflow import layout
from stepflow.cli.common import command_hint, console, local_backend, store_option
from stepflow.cli.executions import complete_execution, complete_pipeline, find_execution, resolve_pipeline
from stepflow.engine import TERMINAL_EXECUTION_STATUSES
from stepflow.errors import BackendError

if TYPE_CHECKING:
    from stepflow.backends.local import LocalBackend


def delete_execution(backend: LocalBackend, pipeline: str, execution_id: str) -> int:
    """Delete one finished execution's objects and local files; the number of objects."""
    pstore = backend.pipeline_store(pipeline)
    keys = [info.key for info in pstore.list(layout.execution_prefix(execution_id))]
    # The summary last: while it exists the execution is listed, so an interrupted delete
    # can be run again.
    for key in [*keys, layout.execution_summary_key(execution_id)]:
        pstore.delete(key)
    _prune_empty_folders(pstore.uri(execution_id))
    shutil.rmtree(backend.run_dir / execution_id, ignore_errors=True)
    return len(keys) + 1


def _prune_empty_folders(uri: str) -> None:
    """A file:// store keeps the folders its deleted objects were in; S3 has none. Remove
    the empty ones under ``uri`` so a deleted execution leaves nothing behind either way."""
    if not uri.startswith("file://"):
        return
    from urllib.parse import unquote, urlparse

    top = Path(unquote(urlparse(uri).path))
    if not top.is_dir():
        return
    for folder in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
        with contextlib.suppress(OSError):
            folder.rmdir()
    with contextlib.suppress(OSError):
        top.rmdir()


def _refuse_unfinished(backend: LocalBackend, pipeline: str, execution_id: str) -> None:
    status = backend.describe_execution(pipeline, execution_id)["PipelineExecutionStatus"]
    if status not in TERMINAL_EXECUTION_STATUSES:
        raise BackendError(
            f"Execution {pipeline}/{execution_id} is {status}: stop it first "
            f"(`{command_hint('stop', execution_id)}`), then delete it.", reason="ExecutionRunning")


@click.group("delete")
def delete_group() -> None:
    """Delete executions (with their store folders) or whole pipelines from the store.

    \b
    Examples:
      stepflow delete execution 20261125t013000-3fa2c1
      stepflow delete pipeline churn --yes
    """


@delete_group.command("execution")
@click.argument("executions", nargs=-1, required=True, metavar="EXECUTION...", shell_complete=complete_execution)
@store_option
def delete_execution_command(executions: tuple[str, ...]) -> None:
    """Delete finished executions: their results, logs and records in the store.

    EXECUTION is an id, a unique prefix, or PIPELINE/ID. An unfinished execution is
    refused (stop it first).

    \b
    Examples:
      stepflow delete execution 20261125t013000-3fa2c1
      stepflow delete execution churn/20261125t013000-3fa2c1 20261126t090000-77aa01
    """
    backend = local_backend()
    refs = [find_execution(backend, text) for text in executions]
    for ref in refs:
        _refuse_unfinished(backend, ref.pipeline, ref.execution_id)
    out = console()
    for ref in refs:
        count = delete_execution(backend, ref.pipeline, ref.execution_id)
        out.print(f"deleted {ref.pipeline}/{ref.execution_id} ({count} objects)", markup=False)


@delete_group.command("pipeline")
@click.argument("name", shell_complete=complete_pipeline)
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@store_option
def delete_pipeline_command(name: str, yes: bool) -> None:
    """Delete a pipeline and everything the store keeps for it: artifacts, definitions, executions.

    NAME is the pipeline's name (or the `stepflow up` manifest that builds it). A pipeline
    with an unfinished execution is refused. A manifest that `stepflow up` still watches
    publishes it again on its next pass.

    \b
    Examples:
      stepflow delete pipeline churn
      stepflow delete pipeline churn --yes --store file:///tmp/store
    """
    backend = local_backend()
    pipeline = resolve_pipeline(backend, name)
    executions = [s["PipelineExecutionId"] for s in backend.list_executions(pipeline)["PipelineExecutionSummaries"]]
    for execution_id in executions:
        _refuse_unfinished(backend, pipeline, execution_id)
    folder = layout.in_pipeline(pipeline)
    keys = [info.key for info in backend.store.list(pipeline) if info.key.startswith(folder)]
    where = backend.store.uri(pipeline) + "/"
    if not yes:
        if not sys.stdin.isatty():
            raise BackendError(f"Deleting pipeline '{pipeline}' removes {len(keys)} objects under {where}; "
                               "pass --yes to confirm.", reason="ConfirmationRequired")
        click.confirm(f"Delete pipeline '{pipeline}': {len(keys)} objects under {where}?", abort=True)
    record = layout.in_pipeline(pipeline, layout.pipeline_record_key())
    # The record last: while it exists the pipeline is listed, so a delete can be re-run.
    for key in sorted(keys, key=lambda k: k == record):
        backend.store.delete(key)
    _prune_empty_folders(backend.store.uri(pipeline))
    for execution_id in executions:
        shutil.rmtree(backend.run_dir / execution_id, ignore_errors=True)
    console().print(f"deleted pipeline {pipeline} ({len(keys)} objects)", markup=False)


COMMANDS = [delete_group]
