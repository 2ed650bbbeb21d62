"""``stepflow executions``, ``status``, ``logs``, ``result``, ``resume`` and ``stop``.

They read what the local backend keeps in the store, so they work from any process and
after the process that ran the execution is gone. An execution is named by its id alone
(or a unique prefix of it): the pipeline is found by looking in the store, since people
copy ids from ``stepflow run`` output and should not have to remember the pipeline too.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import click

from stepflow import arns, layout
from stepflow.cli.common import (
    EXIT_CODES,
    ROOT_ENV,
    STATUS_STYLES,
    console,
    elapsed,
    emit,
    format_seconds,
    local_backend,
    output_option,
    print_outcome,
    steps_table,
    store_option,
    summary,
)
from stepflow.engine import TERMINAL_EXECUTION_STATUSES
from stepflow.errors import BackendError

if TYPE_CHECKING:
    from stepflow.backends.local import LocalBackend


# -- finding executions -----------------------------------------------------------------


@dataclass(frozen=True)
class ExecutionRef:
    pipeline: str
    execution_id: str


def _summary_keys(backend: LocalBackend) -> Iterable[ExecutionRef]:
    """Every execution in the store, from the summaries the backend writes per execution."""
    summaries = layout.execution_summaries_prefix()
    for info in backend.store.list(""):
        pipeline, _, rest = info.key.partition("/")
        if rest.startswith(summaries) and rest.endswith(".json") and "/" not in rest[len(summaries):]:
            yield ExecutionRef(pipeline, rest[len(summaries):-len(".json")])


def find_execution(backend: LocalBackend, text: str) -> ExecutionRef:
    """``ID``, a unique prefix of one, ``PIPELINE/ID`` or the execution's ARN (no search)."""
    if text.startswith(("arn:", "stepflow:")):
        parsed = arns.parse_execution(text)
        text = f"{parsed.pipeline_name}/{parsed.execution_id}"
    if "/" in text:
        pipeline, _, execution_id = text.partition("/")
        backend.describe_execution(pipeline, execution_id)  # raises ExecutionNotFound
        return ExecutionRef(pipeline, execution_id)
    refs = list(_summary_keys(backend))
    exact = [r for r in refs if r.execution_id == text]
    matches = exact or [r for r in refs if r.execution_id.startswith(text)]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise BackendError(
            f"No execution '{text}' in {backend.store.root_uri}. List them with `stepflow executions`; "
            f"if it ran against another store, pass --store URI or set {ROOT_ENV}.",
            reason="ExecutionNotFound")
    names = ", ".join(f"{r.pipeline}/{r.execution_id}" for r in matches[:10])
    raise BackendError(f"'{text}' matches several executions ({names}): give more of the id, or PIPELINE/ID.",
                       reason="AmbiguousExecution")


def execution_argument(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.argument("execution", metavar="EXECUTION")(func)


# -- commands ---------------------------------------------------------------------------


@click.command("executions")
@click.argument("pipeline", required=False)
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True)
@store_option
def executions_command(pipeline: str | None, limit: int) -> None:
    """List executions, newest first (of one PIPELINE, or of every pipeline in the store)."""
    backend = local_backend()
    if pipeline:
        rows = [(pipeline, s) for s in backend.list_executions(pipeline)["PipelineExecutionSummaries"]]
    else:
        rows = []
        for name in sorted({r.pipeline for r in _summary_keys(backend)}):
            rows.extend((name, s) for s in backend.list_executions(name)["PipelineExecutionSummaries"])
        rows.sort(key=lambda row: row[1]["StartTime"], reverse=True)
    from rich.table import Table

    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("EXECUTION", "PIPELINE", "STATUS", "STARTED", "DURATION"):
        table.add_column(column, no_wrap=True)
    table.add_column("REASON", overflow="fold")
    for name, s in rows[:limit]:
        status = s["PipelineExecutionStatus"]
        table.add_row(s["PipelineExecutionId"], name, f"[{STATUS_STYLES.get(status, '')}]{status}[/]",
                      s["StartTime"].replace("T", " ")[:19], format_seconds(elapsed(s["StartTime"], s.get("EndTime"))),
                      s.get("PipelineExecutionFailureReason") or "")
    if not rows:
        click.echo(f"no executions in {backend.store.root_uri}", err=True)
        return
    console().print(table)


@click.command("status")
@execution_argument
@output_option
@store_option
def status_command(execution: str, output: str) -> None:
    """Show an execution's steps. EXECUTION is an id, a unique prefix, or PIPELINE/ID.

    Exit code: 0 Succeeded, 1 Failed, 3 Stopped, 4 still running."""
    backend = local_backend()
    ref = find_execution(backend, execution)
    data = summary(backend, ref.pipeline, ref.execution_id)
    if output == "text":
        console().print(steps_table(backend.all_steps(ref.pipeline, ref.execution_id)))
    emit(data, output)
    raise SystemExit(EXIT_CODES.get(data["status"], 1))


@click.command("logs")
@execution_argument
@click.argument("step")
@click.option("--attempt", type=click.IntRange(min=1), help="Which attempt (default: the last).")
@store_option
def logs_command(execution: str, step: str, attempt: int | None) -> None:
    """Print the output (stdout and stderr) of a step's attempt."""
    backend = local_backend()
    ref = find_execution(backend, execution)
    found = _step(backend, ref, step)
    count = found.get("AttemptCount") or 0
    if count == 0:
        raise BackendError(f"Step '{step}' of execution {ref.execution_id} has not run (it is "
                           f"{found['StepStatus']}), so it has no log.", reason="NoLog")
    number = attempt or count
    if number > count:
        raise BackendError(f"Step '{step}' has {count} attempt(s); --attempt {number} does not exist.",
                           reason="NoLog")
    click.echo(_read_log(backend, ref, step, number), nl=False)


def _read_log(backend: LocalBackend, ref: ExecutionRef, step: str, attempt: int) -> str:
    """The uploaded log, or while the attempt still runs here, its local file."""
    from stepflow.backends.local.launcher import ProcessLauncher
    from stepflow.storage import NotFound

    key = layout.attempt_log_key(ref.execution_id, step, attempt)
    try:
        return backend.pipeline_store(ref.pipeline).get_bytes(key).decode(errors="replace")
    except NotFound:
        pass
    local = ProcessLauncher(backend.run_dir).log_path(ref.execution_id, step, attempt)
    if local.exists():
        return local.read_text(errors="replace")
    raise BackendError(f"No log for attempt {attempt} of step '{step}' at "
                       f"{backend.pipeline_store(ref.pipeline).uri(key)} (it ran on another machine "
                       "or its log was not uploaded).", reason="NoLog")


def _step(backend: LocalBackend, ref: ExecutionRef, name: str) -> dict[str, Any]:
    steps = backend.all_steps(ref.pipeline, ref.execution_id)
    for step in steps:
        if step["StepName"] == name:
            return step
    raise BackendError(f"Execution {ref.execution_id} has no step '{name}'; its steps are: "
                       f"{', '.join(s['StepName'] for s in steps)}.", reason="StepNotFound")


@click.command("result")
@execution_argument
@click.argument("step")
@store_option
def result_command(execution: str, step: str) -> None:
    """Print a succeeded @step's return value: as JSON when it is JSON-serializable, else its repr."""
    backend = local_backend()
    ref = find_execution(backend, execution)
    _step(backend, ref, step)
    try:
        value = backend.result(ref.pipeline, ref.execution_id, step)
    except ValueError as exc:  # not a @step (condition, fail step): SageMaker's message
        raise BackendError(f"Step '{step}' is not a @step function step: {exc}", reason="NoResult") from None
    try:
        click.echo(json.dumps(value, indent=2, allow_nan=False))
    except (TypeError, ValueError):
        click.echo(repr(value))


@click.command("resume")
@click.argument("execution", required=False, metavar="[EXECUTION]")
@click.option("--detach", is_flag=True, help="Return once the orchestrators are started.")
@click.option("--timeout", type=float, help="Give up waiting after this many seconds.")
@store_option
def resume_command(execution: str | None, detach: bool, timeout: float | None) -> None:
    """Resume unfinished executions whose orchestrator died (all of them, or EXECUTION).

    Steps that finished or are still running are not run again. Waits for the resumed
    executions to end unless --detach; the exit code is then the worst of theirs
    (0 Succeeded, 1 Failed, 3 Stopped)."""
    backend = local_backend()
    if execution:
        refs = [find_execution(backend, execution)]
    else:
        refs = [r for r in _summary_keys(backend)
                if backend.describe_execution(r.pipeline, r.execution_id)["PipelineExecutionStatus"]
                not in TERMINAL_EXECUTION_STATUSES]
    err = console(stderr=True)
    waiting = []
    for ref in refs:
        if backend.resume(ref.pipeline, ref.execution_id):
            err.print(f"resumed {ref.pipeline}/{ref.execution_id}", markup=False)
            waiting.append(ref)
        else:
            status = backend.describe_execution(ref.pipeline, ref.execution_id)["PipelineExecutionStatus"]
            if status not in TERMINAL_EXECUTION_STATUSES:
                err.print(f"{ref.pipeline}/{ref.execution_id} is {status} and its orchestrator is alive: "
                          "nothing to resume", markup=False)
                waiting.append(ref)
            elif execution:
                err.print(f"{ref.pipeline}/{ref.execution_id} already ended: {status}", markup=False)
                waiting.append(ref)
    if not refs:
        err.print(f"no unfinished executions in {backend.store.root_uri}", markup=False)
    if detach or not waiting:
        return
    deadline = None if timeout is None else time.monotonic() + timeout
    worst = 0
    for ref in waiting:
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        backend.wait(ref.pipeline, ref.execution_id, timeout=left)
        data = summary(backend, ref.pipeline, ref.execution_id)
        print_outcome(console(), data)
        worst = max(worst, EXIT_CODES.get(data["status"], 1))
    raise SystemExit(worst)


@click.command("stop")
@execution_argument
@click.option("--wait/--no-wait", default=True, show_default=True, help="Wait until it has stopped.")
@store_option
def stop_command(execution: str, wait: bool) -> None:
    """Stop an execution: running steps are terminated, pending ones never start."""
    backend = local_backend()
    ref = find_execution(backend, execution)
    backend.stop(ref.pipeline, ref.execution_id)
    if wait:
        backend.wait(ref.pipeline, ref.execution_id, timeout=120)
    status = backend.describe_execution(ref.pipeline, ref.execution_id)["PipelineExecutionStatus"]
    click.echo(f"{ref.pipeline}/{ref.execution_id}: {status}")


COMMANDS = [executions_command, status_command, logs_command, result_command, resume_command, stop_command]
