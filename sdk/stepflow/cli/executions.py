"""``stepflow executions``, ``status``, ``logs``, ``result``, ``resume`` and ``stop``.

They read what the local backend keeps in the store, so they work from any process and
after the process that ran the execution is gone. An execution is named by its id alone
(or a unique prefix of it): the pipeline is found by looking in the store, since people
copy ids from ``stepflow run`` output and should not have to remember the pipeline too.
The helpers here (store selection, step tables, the JSON summary, exit codes) are shared
with ``stepflow run``.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Callable, Iterable

import click

from stepflow import layout
from stepflow.errors import BackendError

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    from stepflow.backends.local import LocalBackend

ROOT_ENV = "STEPFLOW_S3_ROOT_URI"

# The exit code says how the execution ended, so scripts need not parse output. 1 is also
# what any other error exits with: both mean "it did not work".
EXIT_CODES = {"Succeeded": 0, "Failed": 1, "Stopped": 3, "Executing": 4, "Stopping": 4}

_STYLES = {"Succeeded": "green", "Failed": "bold red", "Stopped": "yellow", "Stopping": "yellow",
           "Executing": "cyan", "Starting": "cyan", "Skipped": "dim", "Pending": "dim"}


def store_option(func: Callable[..., Any]) -> Callable[..., Any]:
    """``--store URI``: the same as setting STEPFLOW_S3_ROOT_URI for this command."""
    return click.option(
        "--store", metavar="URI", expose_value=False, is_eager=True,
        callback=lambda ctx, param, value: _use_store(value),
        help=f"Store root (s3://bucket/prefix or file:///path); default: the configured one ({ROOT_ENV}).",
    )(func)


def _use_store(value: str | None) -> None:
    # Through the environment, so the pipeline's default Session, the configuration and
    # every step process this command starts all agree on the store.
    if value:
        os.environ[ROOT_ENV] = value


def local_backend() -> "LocalBackend":
    from stepflow.backends.local import LocalBackend
    from stepflow.session import Session

    return LocalBackend(Session().store)


# -- finding executions -----------------------------------------------------------------


@dataclass(frozen=True)
class ExecutionRef:
    pipeline: str
    execution_id: str


def _summary_keys(backend: "LocalBackend") -> Iterable[ExecutionRef]:
    """Every execution in the store, from the summaries the backend writes per execution."""
    for info in backend.store.list(""):
        parts = info.key.split("/")
        if len(parts) == 4 and parts[1] == ".stepflow" and parts[2] == "executions" and parts[3].endswith(".json"):
            yield ExecutionRef(parts[0], parts[3][: -len(".json")])


def find_execution(backend: "LocalBackend", text: str) -> ExecutionRef:
    """``ID``, a unique prefix of one, or ``PIPELINE/ID`` (no search)."""
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


# -- rendering --------------------------------------------------------------------------


def iso(moment: datetime | str | None) -> str | None:
    if moment is None or isinstance(moment, str):
        return moment
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _parse(moment: datetime | str | None) -> datetime | None:
    if moment is None or isinstance(moment, datetime):
        return moment
    return datetime.fromisoformat(moment.replace("Z", "+00:00"))


def elapsed(start: datetime | str | None, end: datetime | str | None) -> float | None:
    began = _parse(start)
    if began is None:
        return None
    return ((_parse(end) or datetime.now(timezone.utc)) - began).total_seconds()


def format_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


def step_reason(step: dict[str, Any]) -> str:
    return step.get("FailureReason") or step.get("SkipReason") or ""


def steps_table(steps: list[dict[str, Any]]) -> "Table":
    from rich.table import Table

    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("STEP", "TYPE", "STATUS", "ATTEMPT", "ELAPSED"):
        table.add_column(column, no_wrap=True)
    table.add_column("REASON", overflow="fold")
    for step in steps:
        status = step["StepStatus"]
        table.add_row(step["StepName"], step["StepType"], f"[{_STYLES.get(status, '')}]{status}[/]",
                      str(step.get("AttemptCount") or "-"),
                      format_seconds(elapsed(step.get("StartTime"), step.get("EndTime"))),
                      step_reason(step))
    return table


def console(stderr: bool = False) -> "Console":
    from rich.console import Console

    out = Console(stderr=stderr, highlight=False, soft_wrap=True)
    if not out.is_terminal and "COLUMNS" not in os.environ:
        out.width = 200  # a pipe or a log file: no reason to fold ids and reasons at 80
    return out


def step_locations(backend: "LocalBackend", pipeline: str, execution_id: str,
                   step: dict[str, Any]) -> dict[str, str | None]:
    """Store URIs a person looks at next: the result, the last attempt's log, the traceback."""
    pstore = backend.pipeline_store(pipeline)
    name, attempts = step["StepName"], step.get("AttemptCount") or 0
    out: dict[str, str | None] = {"resultUri": None, "logUri": None, "exceptionUri": None}
    if step["StepType"] != "Training":
        return out
    if step["StepStatus"] == "Succeeded":
        out["resultUri"] = pstore.uri(layout.results_prefix(execution_id, name))
    if attempts:
        out["logUri"] = pstore.uri(layout.attempt_log_key(execution_id, name, attempts))
    if step["StepStatus"] == "Failed":
        prefix = layout.exception_prefix(execution_id, name)
        if pstore.head(f"{prefix}/payload.pkl") is not None:
            out["exceptionUri"] = pstore.uri(prefix)
    return out


def summary(backend: "LocalBackend", pipeline: str, execution_id: str) -> dict[str, Any]:
    """The machine-readable account of an execution (``--output json``)."""
    described = backend.describe_execution(pipeline, execution_id)
    steps = []
    for step in backend.list_steps(pipeline, execution_id):
        steps.append({
            "name": step["StepName"], "type": step["StepType"], "status": step["StepStatus"],
            "attempts": step.get("AttemptCount", 0),
            "startTime": iso(step.get("StartTime")), "endTime": iso(step.get("EndTime")),
            "elapsedSeconds": _round(elapsed(step.get("StartTime"), step.get("EndTime"))),
            "failureReason": step.get("FailureReason"), "skipReason": step.get("SkipReason"),
            **step_locations(backend, pipeline, execution_id, step),
        })
    return {
        "pipeline": pipeline, "executionId": execution_id,
        "status": described["PipelineExecutionStatus"],
        "failureReason": described.get("FailureReason"),
        "startTime": iso(described.get("StartTime")), "endTime": iso(described.get("EndTime")),
        "parameters": {p["Name"]: p["Value"] for p in described.get("Parameters", [])},
        "store": backend.pipeline_store(pipeline).root_uri,
        "steps": steps,
    }


def _round(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 3)


def print_outcome(out: "Console", data: dict[str, Any]) -> None:
    """The end of a run or ``status``: the verdict and, for each failed step, where to look."""
    status = data["status"]
    line = f"{data['pipeline']}/{data['executionId']}: [{_STYLES.get(status, '')}]{status}[/]"
    if data.get("failureReason"):
        line += f" — {data['failureReason']}"
    out.print(line)
    for step in data["steps"]:
        if step["status"] != "Failed" or step["type"] != "Training":
            continue
        out.print(f"  step {step['name']} failed: {step['failureReason'] or 'no reason recorded'}", markup=False)
        if step["logUri"]:
            out.print(f"    log:       {step['logUri']}", markup=False)
        if step["exceptionUri"]:
            out.print(f"    traceback: {step['exceptionUri']}", markup=False)
        out.print(f"    see: stepflow logs {data['executionId']} {step['name']}", markup=False)


def emit(data: dict[str, Any], output: str) -> None:
    if output == "json":
        click.echo(json.dumps(data, indent=2))
    else:
        print_outcome(console(), data)


output_option = click.option("--output", "-o", type=click.Choice(["text", "json"]), default="text",
                             show_default=True, help="json: a machine-readable summary on standard output.")


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
        table.add_row(s["PipelineExecutionId"], name, f"[{_STYLES.get(status, '')}]{status}[/]",
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
        console().print(steps_table(backend.list_steps(ref.pipeline, ref.execution_id)))
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


def _read_log(backend: "LocalBackend", ref: ExecutionRef, step: str, attempt: int) -> str:
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


def _step(backend: "LocalBackend", ref: ExecutionRef, name: str) -> dict[str, Any]:
    steps = backend.list_steps(ref.pipeline, ref.execution_id)
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
                in ("Executing", "Stopping")]
    err = console(stderr=True)
    waiting = []
    for ref in refs:
        if backend.resume(ref.pipeline, ref.execution_id):
            err.print(f"resumed {ref.pipeline}/{ref.execution_id}", markup=False)
            waiting.append(ref)
        else:
            status = backend.describe_execution(ref.pipeline, ref.execution_id)["PipelineExecutionStatus"]
            if status in ("Executing", "Stopping"):
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
