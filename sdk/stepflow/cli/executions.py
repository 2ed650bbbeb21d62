"""``stepflow executions``, ``status``, ``logs``, ``result``, ``resume`` and ``stop``.

They read what the local backend keeps in the store, so they work from any process and
after the process that ran the execution is gone. An execution is named by its id alone
(or a unique prefix of it): the pipeline is found by looking in the store, since people
copy ids from ``stepflow run`` output and should not have to remember the pipeline too.
A pipeline is named by the name in its code or by the ``stepflow up`` manifest that builds
it (:func:`resolve_pipeline`), so the name ``up`` shows works here too.
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
    DATA_FORMATS,
    EXIT_CODES,
    ROOT_ENV,
    STATUS_STYLES,
    command_hint,
    console,
    dump,
    elapsed,
    emit,
    format_seconds,
    local_backend,
    output_option,
    print_outcome,
    print_table,
    steps_table,
    store_option,
    summary,
)
from stepflow.cli.sourcelines import annotate_traceback
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
        pipeline = resolve_pipeline(backend, pipeline)
        backend.describe_execution(pipeline, execution_id)  # raises ExecutionNotFound
        return ExecutionRef(pipeline, execution_id)
    refs = list(_summary_keys(backend))
    exact = [r for r in refs if r.execution_id == text]
    matches = exact or [r for r in refs if r.execution_id.startswith(text)]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise BackendError(
            f"No execution '{text}' in {backend.store.root_uri}. List them with `{command_hint('executions')}`; "
            f"if it ran against another store, pass --store URI or set {ROOT_ENV}.",
            reason="ExecutionNotFound")
    names = ", ".join(f"{r.pipeline}/{r.execution_id}" for r in matches[:10])
    raise BackendError(f"'{text}' matches several executions ({names}): give more of the id, or PIPELINE/ID.",
                       reason="AmbiguousExecution")


def resolve_pipeline(backend: LocalBackend, name: str) -> str:
    """The store's pipeline name for ``name``: itself when the store has that pipeline, else
    the pipeline that the ``stepflow up`` manifest called ``name`` builds (a manifest
    ``sales-eu`` may build the pipeline ``sales``)."""
    from stepflow.errors import BackendError as _BackendError
    from stepflow.gitops.up_state import StateStore

    try:
        backend.describe(name)
        return name
    except _BackendError:
        pass
    state = StateStore(backend.store).load(name)
    built = (state.status.get("definition") or {}).get("pipelineName")
    if built:
        return str(built)
    known = sorted({r.pipeline for r in _summary_keys(backend)} | set(pipeline_names(backend)))
    raise BackendError(
        f"No pipeline '{name}' in {backend.store.root_uri}, and no `stepflow up` manifest of that name"
        + (f"; the pipelines there are: {', '.join(known)}" if known else "; the store has no pipelines")
        + f". If it ran against another store, pass --store URI or set {ROOT_ENV}.",
        reason="PipelineNotFound")


def pipeline_names(backend: LocalBackend) -> list[str]:
    """Every pipeline with a record in the store (upserted by run, up or Pipeline.upsert)."""
    record = layout.pipeline_record_key()
    names = set()
    for info in backend.store.list(""):
        pipeline, _, rest = info.key.partition("/")
        if rest == record:
            names.add(pipeline)
    return sorted(names)


def orphaned(backend: LocalBackend, ref: ExecutionRef, status: str) -> bool:
    """An unfinished execution that no process on this machine orchestrates any more: its
    ``stepflow run`` or orchestrator was killed. Shown, with the command that finishes it."""
    return status not in TERMINAL_EXECUTION_STATUSES and not backend.orchestrator_alive(ref.pipeline, ref.execution_id)


def complete_execution(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[Any]:
    """Shell completion: the execution ids in the store, newest first."""
    from click.shell_completion import CompletionItem

    try:
        refs = sorted(_summary_keys(local_backend()), key=lambda r: r.execution_id, reverse=True)
    except Exception:  # noqa: BLE001 - completion must never print a traceback into the shell
        return []
    return [CompletionItem(r.execution_id, help=r.pipeline) for r in refs if r.execution_id.startswith(incomplete)]


def complete_step(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[Any]:
    """Shell completion: the steps of the execution given before."""
    from click.shell_completion import CompletionItem

    try:
        backend = local_backend()
        ref = find_execution(backend, ctx.params["execution"])
        steps = backend.list_steps(ref.pipeline, ref.execution_id)
    except Exception:  # noqa: BLE001 - as above
        return []
    return [CompletionItem(s["StepName"], help=s["StepStatus"]) for s in steps if s["StepName"].startswith(incomplete)]


def complete_pipeline(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[Any]:
    try:
        names = pipeline_names(local_backend())
    except Exception:  # noqa: BLE001 - as above
        return []
    return [n for n in names if n.startswith(incomplete)]


def execution_argument(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.argument("execution", metavar="EXECUTION", shell_complete=complete_execution)(func)


def step_argument(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.argument("step", metavar="STEP", shell_complete=complete_step)(func)


# -- commands ---------------------------------------------------------------------------


def execution_rows(backend: LocalBackend, pipeline: str | None) -> list[dict[str, Any]]:
    """Executions newest first, each as -o json shows it."""
    if pipeline:
        name = resolve_pipeline(backend, pipeline)
        found = [(name, s) for s in backend.list_executions(name)["PipelineExecutionSummaries"]]
    else:
        found = []
        for name in sorted({r.pipeline for r in _summary_keys(backend)}):
            found.extend((name, s) for s in backend.list_executions(name)["PipelineExecutionSummaries"])
        found.sort(key=lambda row: row[1]["StartTime"], reverse=True)
    rows = []
    for name, s in found:
        ref = ExecutionRef(name, s["PipelineExecutionId"])
        status = s["PipelineExecutionStatus"]
        rows.append({"executionId": ref.execution_id, "pipeline": name, "status": status,
                     "orphaned": orphaned(backend, ref, status),
                     "startTime": s["StartTime"], "endTime": s.get("EndTime"),
                     "elapsedSeconds": _round(elapsed(s["StartTime"], s.get("EndTime"))),
                     "failureReason": s.get("PipelineExecutionFailureReason")})
    return rows


def _round(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 3)


def status_text(status: str, is_orphaned: bool) -> str:
    """A status as a table shows it; an orphaned execution says so instead of looking alive."""
    if is_orphaned:
        return f"[yellow]{status} (no orchestrator)[/]"
    return f"[{STATUS_STYLES.get(status, '')}]{status}[/]"


@click.command("executions")
@click.argument("pipeline", required=False, shell_complete=complete_pipeline)
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True)
@output_option(wide=True)
@store_option
def executions_command(pipeline: str | None, limit: int, output: str) -> None:
    """List executions, newest first (of one PIPELINE, or of every pipeline in the store).

    PIPELINE is the name in the pipeline's code or the name of the `stepflow up` manifest
    that builds it.

    \b
    Examples:
      stepflow executions
      stepflow executions churn --limit 5 -o wide
      stepflow executions -o json | jq -r '.[0].executionId'
    """
    backend = local_backend()
    rows = execution_rows(backend, pipeline)[:limit]
    if output in DATA_FORMATS:
        click.echo(dump(rows, output), nl=False)
        return
    if not rows:
        click.echo(f"no executions in {backend.store.root_uri}", err=True)
        return
    from rich.table import Table
    from rich.text import Text

    wide = output == "wide"
    table = Table(box=None, pad_edge=False, header_style="bold")
    columns = ["EXECUTION", "PIPELINE", "STATUS", "STARTED", "DURATION", *(["ENDED"] if wide else [])]
    for column in columns:
        table.add_column(column, no_wrap=True)
    table.add_column("REASON", overflow="fold")
    for row in rows:
        reason = row["failureReason"] or ""
        if row["orphaned"]:
            reason = reason or f"finish it: {command_hint('resume', row['executionId'])}"
        cells = [row["executionId"], row["pipeline"], status_text(row["status"], row["orphaned"]),
                 row["startTime"].replace("T", " ")[:19], format_seconds(row["elapsedSeconds"])]
        if wide:
            cells.append((row["endTime"] or "").replace("T", " ")[:19])
        table.add_row(*cells, Text(reason))
    print_table(console(), table)


@click.command("status")
@execution_argument
@output_option()
@click.option("--watch", "-w", is_flag=True, help="Redraw until the execution ends.")
@store_option
def status_command(execution: str, output: str, watch: bool) -> None:
    """Show an execution's steps. EXECUTION is an id, a unique prefix, or PIPELINE/ID.

    \b
    Exit code: 0 Succeeded, 1 Failed, 3 Stopped, 4 still running.

    \b
    Examples:
      stepflow status 20261125t013000-3fa2c1
      stepflow status 2026112 --watch
      stepflow status churn/20261125t013000-3fa2c1 -o yaml
    """
    backend = local_backend()
    ref = find_execution(backend, execution)
    if watch:
        _watch(backend, ref)
    data = summary(backend, ref.pipeline, ref.execution_id)
    if output == "text":
        print_table(console(), steps_table(backend.all_steps(ref.pipeline, ref.execution_id)))
    emit(data, output)
    if output == "text" and orphaned(backend, ref, data["status"]):
        console(stderr=True).print(
            f"no process is orchestrating this execution any more (its `stepflow run` or orchestrator "
            f"ended); finish it with: {command_hint('resume', ref.execution_id)}", markup=False)
    raise SystemExit(EXIT_CODES.get(data["status"], 1))


def _watch(backend: LocalBackend, ref: ExecutionRef) -> None:
    """The step table, redrawn on a terminal (one line per change elsewhere), until it ends."""
    from rich.live import Live

    from stepflow.cli.common import PlainProgress

    err = console(stderr=True)

    def steps() -> list[dict[str, Any]]:
        return backend.list_steps(ref.pipeline, ref.execution_id)

    def ended() -> bool:
        return backend.execution_state(ref.pipeline, ref.execution_id).terminal

    if err.is_terminal:
        with Live(steps_table(steps()), console=err, refresh_per_second=4, transient=True) as live:
            while not ended():
                time.sleep(0.5)
                live.update(steps_table(steps()))
        return
    progress = PlainProgress(err, steps)
    while True:
        progress.update()
        if ended():
            progress.update()
            return
        time.sleep(0.5)


@click.command("logs")
@execution_argument
@step_argument
@click.option("--attempt", type=click.IntRange(min=1), help="Which attempt (default: the last).")
@click.option("--follow", "-f", is_flag=True, help="Keep printing while the step runs (and its retries).")
@store_option
def logs_command(execution: str, step: str, attempt: int | None, follow: bool) -> None:
    """Print the output (stdout and stderr) of a step's attempt.

    \b
    Examples:
      stepflow logs 20261125t013000-3fa2c1 train
      stepflow logs -f 2026112 train
      stepflow logs 2026112 train --attempt 1
    """
    backend = local_backend()
    ref = find_execution(backend, execution)
    if follow:
        _follow(backend, ref, step, attempt)
        return
    found = _step(backend, ref, step)
    count = found.get("AttemptCount") or 0
    if count == 0:
        raise BackendError(f"Step '{step}' of execution {ref.execution_id} has not run (it is "
                           f"{found['StepStatus']}), so it has no log yet; wait for it with "
                           f"`{command_hint('logs', '-f', ref.execution_id, step)}`.", reason="NoLog")
    number = attempt or count
    if number > count:
        raise BackendError(f"Step '{step}' has {count} attempt(s); --attempt {number} does not exist.",
                           reason="NoLog")
    click.echo(annotate_traceback(_read_log(backend, ref, step, number)), nl=False)


def _follow(backend: LocalBackend, ref: ExecutionRef, step: str, attempt: int | None) -> None:
    """``logs -f``: wait for the step to start, print its output as it grows, go on to the
    next attempt of a retried step, and return when the step (or the execution) is over."""
    printed: dict[int, int] = {}
    number = attempt or 0
    while True:
        found = _step(backend, ref, step)
        count = found.get("AttemptCount") or 0
        current = attempt or count
        if current and current >= number:
            number = current
            text = _read_log(backend, ref, step, number, missing_ok=True)
            done = printed.get(number, 0)
            if len(text) > done:
                click.echo(text[done:], nl=False)
                printed[number] = len(text)
        over = found["StepStatus"] not in ("Pending", "Starting", "Executing")
        if attempt is not None and count > attempt:
            over = True
        if over or backend.execution_state(ref.pipeline, ref.execution_id).terminal:
            # One more read: the uploaded log is the whole of it.
            if number:
                text = _read_log(backend, ref, step, number, missing_ok=True)
                click.echo(text[printed.get(number, 0):], nl=False)
            return
        time.sleep(0.3)


def _read_log(backend: LocalBackend, ref: ExecutionRef, step: str, attempt: int, *, missing_ok: bool = False) -> str:
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
    if missing_ok:
        return ""
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
@step_argument
@output_option(default="json")
@store_option
def result_command(execution: str, step: str, output: str) -> None:
    """Print a succeeded @step's return value: as JSON (or YAML) when it is serializable, else its repr.

    \b
    Examples:
      stepflow result 20261125t013000-3fa2c1 evaluate
      stepflow result 2026112 evaluate | jq .accuracy
      stepflow result 2026112 evaluate -o yaml
    """
    backend = local_backend()
    ref = find_execution(backend, execution)
    _step(backend, ref, step)
    try:
        value = backend.result(ref.pipeline, ref.execution_id, step)
    except ValueError as exc:  # not a @step (condition, fail step): SageMaker's message
        raise BackendError(f"Step '{step}' is not a @step function step: {exc}", reason="NoResult") from None
    if output == "text":
        click.echo(repr(value))
        return
    try:
        text = dump(value, output) if output == "yaml" else json.dumps(value, indent=2, allow_nan=False) + "\n"
    except Exception:  # noqa: BLE001 - json's TypeError/ValueError, yaml's RepresenterError
        text = repr(value) + "\n"
    click.echo(text, nl=False)


@click.command("resume")
@click.argument("execution", required=False, metavar="[EXECUTION]")
@click.option("--detach", is_flag=True, help="Return once the orchestrators are started.")
@click.option("--timeout", type=float, help="Give up waiting after this many seconds.")
@store_option
def resume_command(execution: str | None, detach: bool, timeout: float | None) -> None:
    """Resume unfinished executions whose orchestrator died (all of them, or EXECUTION).

    Steps that finished or are still running are not run again. Waits for the resumed
    executions to end unless --detach; the exit code is then the worst of theirs
    (0 Succeeded, 1 Failed, 3 Stopped).

    \b
    Examples:
      stepflow resume
      stepflow resume 20261125t013000-3fa2c1 --detach
    """
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
    """Stop an execution: running steps are terminated, pending ones never start.

    \b
    Examples:
      stepflow stop 20261125t013000-3fa2c1
      stepflow stop 2026112 --no-wait
    """
    backend = local_backend()
    ref = find_execution(backend, execution)
    backend.stop(ref.pipeline, ref.execution_id)
    if wait:
        backend.wait(ref.pipeline, ref.execution_id, timeout=120)
    status = backend.describe_execution(ref.pipeline, ref.execution_id)["PipelineExecutionStatus"]
    click.echo(f"{ref.pipeline}/{ref.execution_id}: {status}")


COMMANDS = [executions_command, status_command, logs_command, result_command, resume_command, stop_command]
