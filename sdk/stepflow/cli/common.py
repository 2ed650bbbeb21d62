"""What several commands share: the store option, the local backend, the console, loading
a pipeline, output formats, hints that work when pasted, and how an execution is shown
(step tables, the summary, exit codes)."""

from __future__ import annotations

import json
import os
import shlex
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from stepflow import layout, timefmt
from stepflow.cli.sourcelines import failure_location, source_line

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    from stepflow.backends.local import LocalBackend
    from stepflow.workflow.pipeline import Pipeline

ROOT_ENV = "STEPFLOW_S3_ROOT_URI"

# The exit code says how the execution ended, so scripts need not parse output. 1 is also
# what any other error exits with: both mean "it did not work".
EXIT_CODES = {"Succeeded": 0, "Failed": 1, "Stopped": 3, "Executing": 4, "Stopping": 4}

#: rich styles for execution and step statuses.
STATUS_STYLES = {"Succeeded": "green", "Failed": "bold red", "Stopped": "yellow",
                 "Stopping": "yellow", "Executing": "cyan", "Starting": "cyan", "Skipped": "dim",
                 "Pending": "dim"}


# -- options and what they select -------------------------------------------------------


def store_option(func: Callable[..., Any]) -> Callable[..., Any]:
    """``--store URI``: the same as setting STEPFLOW_S3_ROOT_URI for this command."""
    return click.option(
        "--store", metavar="URI", expose_value=False, is_eager=True,
        callback=lambda ctx, param, value: _use_store(value),
        help=f"Store root (s3://bucket/prefix or file:///path); default: the configured one ({ROOT_ENV}).",
    )(func)


#: The --store this command was given, so the commands it suggests carry it too.
_given_store: str | None = None


def _use_store(value: str | None) -> None:
    # Through the environment, so the pipeline's default Session, the configuration and
    # every step process this command starts all agree on the store.
    global _given_store
    if value:
        from stepflow.errors import ConfigurationError
        from stepflow.storage import open_store

        try:
            open_store(value)
        except ConfigurationError as exc:  # said of --store, not of the variable it sets
            raise click.BadParameter(exc.message, param_hint="--store") from None
        os.environ[ROOT_ENV] = value
        _given_store = value


def command_hint(*args: str) -> str:
    """A ``stepflow ...`` command line to print as advice, carrying the ``--store`` this
    command was given: pasted into the same shell, it looks where this command looked."""
    words = ["stepflow", *args]
    if _given_store:
        words += ["--store", _given_store]
    return shlex.join(words)


#: Formats of -o: text (a table or lines), wide (the table with more columns), json, yaml.
DATA_FORMATS = ("json", "yaml")


def output_option(*, wide: bool = False, default: str = "text") -> Callable[[Callable[..., Any]], Any]:
    """``-o/--output``: text, json, yaml (and wide where a table has more columns), as kubectl."""
    choices = ["text", *(["wide"] if wide else []), *DATA_FORMATS]
    return click.option("--output", "-o", type=click.Choice(choices), default=default, show_default=True,
                        help="json or yaml: the data, typed, on standard output"
                             + ("; wide: the table with more columns." if wide else "."))


def dump(data: Any, fmt: str) -> str:
    """``data`` as JSON or YAML text (keys in the order given)."""
    if fmt == "yaml":
        import yaml

        return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    return json.dumps(data, indent=2) + "\n"


def print_table(out: Console, table: Table) -> None:
    """A table on a terminal as rich draws it; into a pipe or file without the spaces rich
    pads the last column with, so ``grep``, ``awk`` and diffs see clean lines."""
    if out.is_terminal:
        out.print(table)
        return
    with out.capture() as captured:
        out.print(table)
    text = "\n".join(line.rstrip() for line in captured.get().splitlines())
    out.file.write(text + "\n")
    out.file.flush()


def local_backend() -> LocalBackend:
    from stepflow.backends.local import LocalBackend
    from stepflow.session import Session

    return LocalBackend(Session().store)


def kubernetes_backend(namespace: str | None) -> LocalBackend:
    """``--backend kubernetes``: Jobs in ``namespace`` (default: the kubeconfig context's), step
    pods configured by the same variables as the operator's (STEPFLOW_RUNNER_IMAGE, ...)."""
    import os

    from stepflow.backends.kubernetes import KubernetesBackend, KubernetesTarget, current_namespace
    from stepflow.backends.kubernetes.settings import RUNNER_IMAGE_ENV, patience_from_env, step_pods_from_env
    from stepflow.session import Session

    settings = step_pods_from_env(os.environ)
    if settings is None:
        raise click.UsageError(f"--backend kubernetes needs {RUNNER_IMAGE_ENV}: the image step pods run (it must "
                               "hold stepflow; see the chart's steps.image).")
    target = KubernetesTarget(namespace=namespace or current_namespace(), settings=settings,
                              patience=patience_from_env(os.environ))
    return KubernetesBackend(Session().store, target)


def load_target(target: str) -> Pipeline:
    """The Pipeline named by ``PATH[:ATTR]``, imported with a fixed hash seed."""
    entry = Path(sys.argv[0])
    if entry.name == "stepflow" or entry.parts[-2:] == ("stepflow", "__main__.py"):
        # The installed command or `python -m stepflow`, not an in-process call.
        from stepflow.compiler.hashseed import ensure_fixed_hash_seed

        ensure_fixed_hash_seed(sys.argv if entry.name == "stepflow" else ["-m", "stepflow", *sys.argv[1:]])
    from stepflow.compiler.loader import load_pipeline

    return load_pipeline(target)


def console(stderr: bool = False) -> Console:
    from rich.console import Console

    out = Console(stderr=stderr, highlight=False, soft_wrap=True)
    if not out.is_terminal and "COLUMNS" not in os.environ:
        out.width = 200  # a pipe or a log file: no reason to fold ids and reasons at 80
    return out


# -- times ------------------------------------------------------------------------------


def _moment(value: datetime | str | None) -> datetime | None:
    """Backends give datetimes (executions, steps) and RFC 3339 strings (execution lists)."""
    return value if isinstance(value, datetime) else timefmt.parse_or_none(value)


def elapsed(start: datetime | str | None, end: datetime | str | None) -> float | None:
    """Seconds from ``start`` to ``end``, or to now while it runs; None before it started."""
    began = _moment(start)
    if began is None:
        return None
    return ((_moment(end) or timefmt.utcnow()) - began).total_seconds()


def format_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


def _millis(value: datetime | str | None) -> str | None:
    moment = _moment(value)
    return None if moment is None else timefmt.millis(moment)


def _round(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 3)


# -- an execution, shown ----------------------------------------------------------------


def step_reason(step: dict[str, Any]) -> str:
    return step.get("FailureReason") or step.get("SkipReason") or ""


def steps_table(steps: list[dict[str, Any]]) -> Table:
    from rich.table import Table
    from rich.text import Text

    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("STEP", "TYPE", "STATUS", "ATTEMPT", "ELAPSED"):
        table.add_column(column, no_wrap=True)
    table.add_column("REASON", overflow="fold")
    for step in steps:
        status = step["StepStatus"]
        table.add_row(step["StepName"], step["StepType"], f"[{STATUS_STYLES.get(status, '')}]{status}[/]",
                      str(step.get("AttemptCount") or "-"),
                      format_seconds(elapsed(step.get("StartTime"), step.get("EndTime"))),
                      Text(step_reason(step)))
    return table


def step_locations(backend: LocalBackend, pipeline: str, execution_id: str,
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


def summary(backend: LocalBackend, pipeline: str, execution_id: str) -> dict[str, Any]:
    """The machine-readable account of an execution (``--output json``). Parameters keep
    their declared types (the SageMaker API shapes carry them as strings)."""
    described = backend.describe_execution(pipeline, execution_id)
    parameters = backend.execution_state(pipeline, execution_id).parameters
    steps = []
    for step in backend.all_steps(pipeline, execution_id):
        steps.append({
            "name": step["StepName"], "type": step["StepType"], "status": step["StepStatus"],
            "attempts": step.get("AttemptCount", 0),
            "startTime": _millis(step.get("StartTime")), "endTime": _millis(step.get("EndTime")),
            "elapsedSeconds": _round(elapsed(step.get("StartTime"), step.get("EndTime"))),
            "failureReason": step.get("FailureReason"), "skipReason": step.get("SkipReason"),
            **step_locations(backend, pipeline, execution_id, step),
        })
    return {
        "pipeline": pipeline, "executionId": execution_id,
        "status": described["PipelineExecutionStatus"],
        "failureReason": described.get("FailureReason"),
        "startTime": _millis(described.get("StartTime")), "endTime": _millis(described.get("EndTime")),
        "parameters": dict(parameters),
        "store": backend.pipeline_store(pipeline).root_uri,
        "steps": steps,
    }


def print_outcome(out: Console, data: dict[str, Any]) -> None:
    """The end of a run or ``status``: the verdict and, for each failed step, where to look."""
    status = data["status"]
    line = f"{data['pipeline']}/{data['executionId']}: [{STATUS_STYLES.get(status, '')}]{status}[/]"
    if data.get("failureReason"):
        line += f" — {data['failureReason']}"
    out.print(line)
    for step in data["steps"]:
        if step["status"] != "Failed" or step["type"] != "Training":
            continue
        out.print(f"  step {step['name']} failed: {step['failureReason'] or 'no reason recorded'}", markup=False)
        where = failure_location(step["failureReason"])
        source = where and source_line(*where)
        if where and source:
            out.print(f"    at {where[0]}:{where[1]}:  {source}", markup=False)
        if step["logUri"]:
            out.print(f"    log:       {step['logUri']}", markup=False)
        if step["exceptionUri"]:
            out.print(f"    traceback: {step['exceptionUri']}", markup=False)
        out.print(f"    see: {command_hint('logs', data['executionId'], step['name'])}", markup=False)


def emit(data: dict[str, Any], output: str) -> None:
    if output in DATA_FORMATS:
        click.echo(dump(data, output), nl=False)
    else:
        print_outcome(console(), data)


class PlainProgress:
    """One line per step status change, for logs and pipes where a redrawn table is noise.
    ``steps`` gives the steps in the SageMaker API's shape (``list_steps``)."""

    def __init__(self, out: Console, steps: Callable[[], list[dict[str, Any]]]) -> None:
        self.out = out
        self.steps = steps
        self.seen: dict[str, tuple[str, int]] = {}

    def update(self) -> None:
        now = datetime.now().strftime("%H:%M:%S")
        for step in self.steps():
            key = (step["StepStatus"], step.get("AttemptCount") or 0)
            if self.seen.get(step["StepName"], ("Pending", 0)) == key:
                continue
            self.seen[step["StepName"]] = key
            detail = f" attempt {key[1]}" if key[1] else ""
            spent = elapsed(step.get("StartTime"), step.get("EndTime")) if step.get("EndTime") else None
            if spent is not None:
                detail += f" after {format_seconds(spent)}"
            reason = step_reason(step)
            self.out.print(f"{now} {step['StepName']}: {key[0]}{detail}" + (f" — {reason}" if reason else ""),
                           markup=False)
