"""``stepflow run``: compile, publish, upsert and run a pipeline on this machine, in view.

The orchestrator runs in this process (the local backend's foreground mode) while every
step attempt is its own detached process, so a killed ``stepflow run`` loses nothing:
``stepflow resume`` takes the execution over without running a step twice.
"""

from __future__ import annotations

import json
import shutil
import signal
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import click

from stepflow.cli.common import (
    EXIT_CODES,
    console,
    emit,
    format_seconds,
    kubernetes_backend,
    load_target,
    local_backend,
    output_option,
    steps_table,
    store_option,
    summary,
)
from stepflow.engine import ParameterError

if TYPE_CHECKING:
    from rich.console import Console

    from stepflow.backends.local import LocalBackend
    from stepflow.engine import ExecutionState, Plan

# 130 is what a shell reports for a command ended by Ctrl-C.
EXIT_DETACHED = 130


def parse_params(values: tuple[str, ...]) -> dict[str, str]:
    """``("Epochs=3", "Name=a=b")`` → ``{"Epochs": "3", "Name": "a=b"}``; the engine types them."""
    params: dict[str, str] = {}
    for value in values:
        name, sep, text = value.partition("=")
        if not sep or not name.strip():
            raise click.BadParameter(f"{value!r} is not NAME=VALUE (e.g. --param Epochs=3).",
                                     param_hint="--param")
        params[name.strip()] = text
    return params


class StepView:
    """What the terminal shows while the execution runs: one row per step, redrawn by rich
    a few times a second (so elapsed times move) from the latest state the orchestrator saw."""

    def __init__(self, plan: Plan, state: ExecutionState) -> None:
        self.plan = plan
        self.state = state

    def steps(self) -> list[dict[str, Any]]:
        from stepflow.backends.views import list_steps

        return list_steps(self.plan, self.state)

    def __rich__(self) -> Any:
        return steps_table(self.steps())


class PlainProgress:
    """One line per step status change, for logs and pipes where a redrawn table is noise."""

    def __init__(self, out: Console, view: StepView) -> None:
        self.out = out
        self.view = view
        self.seen: dict[str, tuple[str, int]] = {}

    def update(self) -> None:
        now = datetime.now(UTC).strftime("%H:%M:%S")
        for step in self.view.steps():
            key = (step["StepStatus"], step.get("AttemptCount") or 0)
            if self.seen.get(step["StepName"], ("Pending", 0)) == key:
                continue
            self.seen[step["StepName"]] = key
            detail = f" attempt {key[1]}" if key[1] else ""
            if step.get("EndTime") and step.get("StartTime"):
                detail += f" after {format_seconds((step['EndTime'] - step['StartTime']).total_seconds())}"
            reason = step.get("FailureReason") or step.get("SkipReason")
            self.out.print(f"{now} {step['StepName']}: {key[0]}{detail}" + (f" — {reason}" if reason else ""),
                           markup=False)


class Interrupts:
    """First Ctrl-C asks the execution to stop (the orchestrator terminates running steps and
    the execution ends Stopped); a second one returns at once, leaving it resumable."""

    def __init__(self, backend: LocalBackend, pipeline: str, execution_id: str, out: Console) -> None:
        self.backend, self.pipeline, self.execution_id, self.out = backend, pipeline, execution_id, out
        self.presses = 0
        self.stop_sent = False

    def __enter__(self) -> Interrupts:
        self._previous = signal.signal(signal.SIGINT, self._pressed)
        return self

    def __exit__(self, *exc: object) -> None:
        signal.signal(signal.SIGINT, self._previous)

    def _pressed(self, signum: int, frame: object) -> None:
        self.presses += 1

    def should_stop(self) -> bool:
        """Polled by the orchestrator between ticks, so the stop request is written from its thread."""
        if self.presses >= 2:
            return True
        if self.presses == 1 and not self.stop_sent:
            self.stop_sent = True
            self.backend.stop(self.pipeline, self.execution_id)
            self.out.print("stopping the execution (Ctrl-C again to detach and leave it running)", markup=False)
        return False


@click.command("run")
@click.argument("target", metavar="PATH[:ATTR]")
@click.option("--param", "-p", "params", multiple=True, metavar="NAME=VALUE",
              help="A pipeline parameter; repeat for several. Typed by the pipeline's declaration.")
@click.option("--parallelism", type=click.IntRange(min=1), help="Run at most N steps at the same time.")
@output_option
@click.option("--detach", is_flag=True, help="Start the execution in the background and print its id.")
@click.option("--backend", type=click.Choice(["local", "kubernetes"]), default="local", show_default=True,
              help="local: steps are processes here; kubernetes: a Job per step in the kubeconfig's cluster "
                   "(the store must be s3://, the image is STEPFLOW_RUNNER_IMAGE).")
@click.option("--namespace", help="backend kubernetes: the Jobs' namespace (default: the current context's).")
@store_option
def run_command(target: str, params: tuple[str, ...], parallelism: int | None, output: str, detach: bool,
                backend: str, namespace: str | None) -> None:
    """Compile, publish and run a pipeline on this machine, showing each step as it runs.

    PATH[:ATTR] is a file (pipelines/churn.py) or dotted module, and the Pipeline attribute.

    \b
    Exit code: 0 Succeeded, 1 Failed, 2 bad usage or parameters, 3 Stopped,
    130 detached by a second Ctrl-C.
    Ctrl-C stops the execution: running steps are terminated and it ends Stopped.
    Press Ctrl-C again to return at once instead, leaving the execution running in
    the background without an orchestrator; `stepflow resume` picks it up (steps
    already finished or still running are not run again).
    """
    given = parse_params(params)
    pipeline = load_target(target)
    err = console(stderr=True)
    chosen = kubernetes_backend(namespace) if backend == "kubernetes" else None
    published, plan, name = _publish(pipeline, given, err, chosen)
    _run(published, plan, name, given, parallelism, output, detach, err)


def _run(backend: LocalBackend, plan: Plan, name: str, given: dict[str, str], parallelism: int | None,
         output: str, detach: bool, err: Console) -> None:
    """Create the execution and orchestrate it in this process (or in the background: ``detach``)."""
    for resumed in backend.resume_unfinished(name):
        err.print(f"resumed unfinished execution {name}/{resumed} in the background", markup=False)
    try:
        state = backend.create_execution(name, parameters=given, parallelism=parallelism)
    except ParameterError as exc:
        _usage_error(err, exc)
    execution_id = state.execution_id
    if detach:
        backend.resume(name, execution_id)
        if output == "json":
            click.echo(json.dumps(summary(backend, name, execution_id), indent=2))
        else:
            click.echo(execution_id)
        return
    err.print(f"execution {name}/{execution_id}  (store {backend.pipeline_store(name).root_uri})", markup=False)
    final = _orchestrate(backend, plan, state, err)
    data = summary(backend, name, execution_id)
    if not final.terminal:
        err.print(f"detached: {name}/{execution_id} is {final.status}; finish it with "
                  f"`stepflow resume {execution_id}`", markup=False)
        if output == "json":
            click.echo(json.dumps(data, indent=2))
        raise SystemExit(EXIT_DETACHED)
    if output == "text" and not err.is_terminal:
        console().print(steps_table(backend.list_steps(name, execution_id)))
    emit(data, output)
    raise SystemExit(EXIT_CODES.get(data["status"], 1))


def _publish(pipeline: Any, given: dict[str, str], err: Console,
             chosen: LocalBackend | None = None) -> tuple[LocalBackend, Plan, str]:
    """One compile; the parameters are checked against it before anything is uploaded."""
    from stepflow.backends.local import LocalBackend
    from stepflow.compiler.bundle import scratch_dir
    from stepflow.compiler.publish import publish
    from stepflow.engine import Plan, resolve_parameters

    session = pipeline.session
    backend = chosen or (session.backend if isinstance(session.backend, LocalBackend) else local_backend())
    bundle = pipeline.compile(scratch_dir())
    try:
        definition = json.loads(bundle.definition_bytes)
        try:
            resolve_parameters(definition, given)
        except ParameterError as exc:
            _usage_error(err, exc)
        report = publish(bundle, session.store)
        backend.upsert(bundle, session.store)
    finally:
        shutil.rmtree(bundle.root, ignore_errors=True)
    err.print(f"published {bundle.pipeline_name}: {bundle.step_count} steps, {report.uploaded_files} files "
              f"uploaded ({report.uploaded_bytes} bytes), {report.skipped_files} unchanged", markup=False)
    return backend, Plan.from_definition(definition), bundle.pipeline_name


def _usage_error(err: Console, exc: ParameterError) -> None:
    from stepflow.cli.main import error_paragraph

    err.print(error_paragraph(exc), style="bold red", markup=False)
    sys.exit(2)


def _orchestrate(backend: LocalBackend, plan: Plan, state: ExecutionState, err: Console) -> ExecutionState:
    from rich.live import Live

    view = StepView(plan, state)
    name, execution_id = state.pipeline_name, state.execution_id
    with Interrupts(backend, name, execution_id, err) as interrupts:
        if err.is_terminal:
            with Live(view, console=err, refresh_per_second=4, redirect_stdout=False, redirect_stderr=False):
                def changed(new: ExecutionState) -> None:
                    view.state = new

                return backend.run(name, execution_id, on_change=changed, should_stop=interrupts.should_stop)
        progress = PlainProgress(err, view)

        def changed_plain(new: ExecutionState) -> None:
            view.state = new
            progress.update()

        return backend.run(name, execution_id, on_change=changed_plain, should_stop=interrupts.should_stop)


COMMANDS = [run_command]
