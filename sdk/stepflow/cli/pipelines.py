"""``stepflow pipelines`` (also ``stepflow get pipelines``): the pipelines in the store with
their state, as ``flux get`` lists sources and kustomizations.

A pipeline is in the store once ``run``, ``up`` or ``Pipeline.upsert()`` published it; the
``stepflow up`` manifest that builds it, if any, is found in up's status documents, so the
two names (manifest ``sales-eu``, pipeline ``sales``) are shown side by side.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import click

from stepflow import layout
from stepflow.cli.common import (
    DATA_FORMATS,
    STATUS_STYLES,
    console,
    dump,
    local_backend,
    output_option,
    print_table,
    store_option,
)
from stepflow.cli.executions import ExecutionRef, executions_command, orphaned, pipeline_names, status_text
from stepflow.errors import BackendError

if TYPE_CHECKING:
    from stepflow.backends.local import LocalBackend


def manifests_by_pipeline(backend: LocalBackend) -> dict[str, list[dict[str, Any]]]:
    """``stepflow up``'s manifests in this store, keyed by the pipeline each builds."""
    from stepflow.gitops.conditions import READY, get_condition
    from stepflow.gitops.up_state import StateStore

    states = StateStore(backend.store)
    out: dict[str, list[dict[str, Any]]] = {}
    for info in backend.store.list(f"{layout.UP_STATE_FOLDER}/"):
        name = info.key[len(layout.UP_STATE_FOLDER) + 1:].removesuffix(".json")
        status = states.load(name).status
        pipeline = (status.get("definition") or {}).get("pipelineName")
        if pipeline:
            ready = get_condition(status.get("conditions"), READY) or {}
            out.setdefault(pipeline, []).append({
                "name": name, "ready": ready.get("status"), "message": ready.get("message"),
                "revision": (status.get("summary") or {}).get("revision")})
    return out


def pipeline_rows(backend: LocalBackend) -> list[dict[str, Any]]:
    manifests = manifests_by_pipeline(backend)
    rows = []
    for name in pipeline_names(backend):
        try:
            record = backend.describe(name)
        except BackendError:
            continue  # deleted while we listed
        steps = _count_steps(json.loads(record["PipelineDefinition"]).get("Steps", []))
        summaries = backend.list_executions(name)["PipelineExecutionSummaries"]
        last = summaries[0] if summaries else None
        status = last["PipelineExecutionStatus"] if last else None
        rows.append({
            "name": name, "steps": steps, "definitionDigest": record["DefinitionDigest"],
            "updated": record.get("LastModifiedTime"), "executions": len(summaries),
            "lastExecution": None if last is None else {
                "executionId": last["PipelineExecutionId"], "status": status,
                "orphaned": orphaned(backend, ExecutionRef(name, last["PipelineExecutionId"]), status or ""),
                "startTime": last["StartTime"], "endTime": last.get("EndTime"),
                "failureReason": last.get("PipelineExecutionFailureReason")},
            "manifests": manifests.get(name, []),
        })
    return rows


def _count_steps(steps: list[dict[str, Any]]) -> int:
    """Every step of a definition, those inside condition branches too."""
    total = 0
    for step in steps:
        arguments = step.get("Arguments") or {}
        total += 1 + _count_steps(arguments.get("IfSteps", [])) + _count_steps(arguments.get("ElseSteps", []))
    return total


@click.command("pipelines")
@output_option(wide=True)
@store_option
def pipelines_command(output: str) -> None:
    """List the pipelines in the store, with their latest execution and `stepflow up` manifest.

    \b
    Examples:
      stepflow pipelines
      stepflow get pipelines -o wide
      stepflow pipelines -o json | jq -r '.[].name'
    """
    backend = local_backend()
    rows = pipeline_rows(backend)
    if output in DATA_FORMATS:
        click.echo(dump(rows, output), nl=False)
        return
    if not rows:
        click.echo(f"no pipelines in {backend.store.root_uri}", err=True)
        return
    from rich.table import Table
    from rich.text import Text

    wide = output == "wide"
    table = Table(box=None, pad_edge=False, header_style="bold")
    columns = ["NAME", "MANIFEST", "STEPS", "LAST EXECUTION", "STATUS", "STARTED",
               *(["RUNS", "DEFINITION", "UPDATED"] if wide else [])]
    for column in columns:
        table.add_column(column, no_wrap=True)
    table.add_column("MESSAGE", overflow="fold")
    for row in rows:
        last = row["lastExecution"] or {}
        manifest = ",".join(m["name"] for m in row["manifests"])
        messages = [f"{m['name']}: {m['message']}" for m in row["manifests"] if m["ready"] == "False" and m["message"]]
        status = status_text(last["status"], last["orphaned"]) if last else f"[{STATUS_STYLES['Pending']}]-[/]"
        cells = [row["name"], manifest or "-", str(row["steps"]), last.get("executionId") or "-", status,
                 (last.get("startTime") or "-").replace("T", " ")[:19]]
        if wide:
            updated = (row["updated"] or "").replace("T", " ")[:19]
            cells += [str(row["executions"]), row["definitionDigest"][:19], updated]
        table.add_row(*cells, Text("; ".join(messages) or (last.get("failureReason") or "")))
    print_table(console(), table)


@click.group("get")
def get_group() -> None:
    """List pipelines or executions (`flux get`, `kubectl get` style aliases).

    \b
    Examples:
      stepflow get pipelines
      stepflow get executions churn
    """


get_group.add_command(pipelines_command)
get_group.add_command(executions_command)

COMMANDS = [pipelines_command, get_group]
