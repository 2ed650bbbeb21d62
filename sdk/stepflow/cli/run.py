"""``stepflow run``: compile, publish, upsert and run a pipeline on this machine, in view.

The orchestrator runs in this process (the local backend's foreground mode) while every
step attempt is its own detached process, so a killed ``stepflow run`` loses nothing:
``stepflow resume`` takes the execution over without running a step twice. SIGTERM (a
cancelled CI job) is a Ctrl-C: the execution is stopped, not orphaned.
"""

from __future__ import annotations

import json
import shutil
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from stepflow.cli.common import (
    DATA_FORMATS,
    EXIT_CODES,
    PlainProgress,
    command_hint,
    console,
    dump,
    emit,
    kubernetes_backend,
    load_target,
    local_backend,
    output_option,
    print_table,
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
    a few times a second (so elapsed times move) from the latest state the orchestrator saw,
    and under it the last lines each running step printed."""

    def __init__(self, plan: Plan, state: ExecutionState, logs: StepLogs | None = None) -> None:
        self.plan = plan
        self.state = state
        self.logs = logs

    def steps(self) -> list[dict[str, Any]]:
        from stepflow.backends.views import all_steps

        return all_steps(self.plan, self.state)

    def __rich__(self) -> Any:
        from rich.console import Group
        from rich.text import Text

        steps = self.steps()
        parts: list[Any] = [steps_table(steps)]
        if self.logs is not None:
            for step in steps:
                if step["StepStatus"] != "Executing" or not step.get("AttemptCount"):
                    continue
                lines = self.logs.tail(step["StepName"], step["AttemptCount"], TAIL_LINES)
                parts.append(Text(f"── {step['StepName']} (attempt {step['AttemptCount']}) ──", style="dim"))
                parts.extend(Text(f"  {line}", style="dim", no_wrap=True, overflow="ellipsis") for line in lines)
        return Group(*parts)


#: How many of a running step's latest output lines the live view shows.
TAIL_LINES = 4


class StepLogs:
    """The output files of this execution's attempts, as the local launcher writes them."""

    def __init__(self, backend: LocalBackend, execution_id: str) -> None:
        from stepflow.backends.local.launcher import ProcessLauncher

        self.launcher = ProcessLauncher(backend.run_dir)
        self.execution_id = execution_id

    def path(self, step: str, attempt: int) -> Path:
        return self.launcher.log_path(self.execution_id, step, attempt)

    def tail(self, step: str, attempt: int, count: int) -> list[str]:
        try:
            with self.path(step, attempt).open("rb") as log:
                log.seek(0, 2)
                log.seek(max(0, log.tell() - 8192))
                text = log.read().decode(errors="replace")
        except OSError:
            return []
        return [line for line in text.splitlines() if line.strip()][-count:]


class LogStreamer:
    """For pipes and CI logs (``--logs``): every line a step prints, as ``step | line``,
    read from the attempts' output files by a thread while the execution runs."""

    def __init__(self, out: Console, logs: StepLogs, view: StepView, lock: threading.Lock) -> None:
        self.out, self.logs, self.view, self.lock = out, logs, view, lock
        self.offsets: dict[tuple[str, int], int] = {}
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="stepflow-logs", daemon=True)

    def __enter__(self) -> LogStreamer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.thread.join(timeout=5)
        self.poll()  # what the last steps printed before they ended

    def _loop(self) -> None:
        while not self.done.wait(0.5):
            self.poll()

    def poll(self) -> None:
        for step in self.view.steps():
            for attempt in range(1, (step.get("AttemptCount") or 0) + 1):
                self._read(step["StepName"], attempt)

    def _read(self, step: str, attempt: int) -> None:
        key = (step, attempt)
        try:
            with self.logs.path(step, attempt).open("rb") as log:
                log.seek(self.offsets.get(key, 0))
                data = log.read()
        except OSError:
            return
        complete = data.rfind(b"\n") + 1  # whole lines only; the rest is read next time
        if not complete:
            return
        self.offsets[key] = self.offsets.get(key, 0) + complete
        with self.lock:
            for line in data[:complete].decode(errors="replace").splitlines():
                self.out.print(f"{step} | {line}", markup=False, highlight=False)


class Interrupts:
    """First Ctrl-C (or SIGTERM, as a cancelled CI job sends) asks the execution to stop:
    the orchestrator terminates running steps and the execution ends Stopped. A second one
    returns at once, leaving it resumable."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, backend: LocalBackend, pipeline: str, execution_id: str, out: Console) -> None:
        self.backend, self.pipeline, self.execution_id, self.out = backend, pipeline, execution_id, out
        self.presses = 0
        self.stop_sent = False
        self.signal_name = "SIGINT"

    def __enter__(self) -> Interrupts:
        self._previous = {signum: signal.signal(signum, self._pressed) for signum in self.SIGNALS}
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def _pressed(self, signum: int, frame: object) -> None:
        self.presses += 1
        self.signal_name = signal.Signals(signum).name

    def should_stop(self) -> bool:
        """Polled by the orchestrator between ticks, so the stop request is written from its thread."""
        if self.presses >= 2:
            return True
        if self.presses == 1 and not self.stop_sent:
            self.stop_sent = True
            self.backend.stop(self.pipeline, self.execution_id)
            again = "Ctrl-C" if self.signal_name == "SIGINT" else "signal"
            self.out.print(f"{self.signal_name}: stopping the execution ({again} again to detach and leave it "
                           "running)", markup=False)
        return False


@click.command("run")
@click.argument("target", metavar="PATH[:ATTR]")
@click.option("--param", "-p", "params", multiple=True, metavar="NAME=VALUE",
              help="A pipeline parameter; repeat for several. Typed by the pipeline's declaration.")
@click.option("--parallelism", type=click.IntRange(min=1), help="Run at most N steps at the same time.")
@output_option()
@click.option("--detach", is_flag=True, help="Start the execution in the background and print its id.")
@click.option("--backend", type=click.Choice(["local", "kubernetes", "sagemaker"]), default=None,
              help="Where the steps run: local (processes here), kubernetes (a Job per step in the "
                   "kubeconfig's cluster; the store must be s3://, the image is STEPFLOW_RUNNER_IMAGE) or "
                   "sagemaker (SageMaker Pipelines; AWS region, endpoint and credentials from boto3's "
                   "configuration). Default: the configuration's Stepflow.Backend / STEPFLOW_BACKEND, else local.")
@click.option("--namespace", help="backend kubernetes: the Jobs' namespace (default: the current context's).")
@click.option("--role-arn", default=None, metavar="ARN",
              help="The IAM role SageMaker runs the pipeline as (sagemaker backend; default: "
                   "SageMaker.Pipeline.RoleArn in the configuration).")
@click.option("--logs/--no-logs", "show_logs", default=None,
              help="Show what steps print: under the live table on a terminal (default), "
                   "as `step | line` in a pipe (default off).")
@click.option("--history-limit", type=click.IntRange(min=1), metavar="N",
              help="Keep only this pipeline's N newest finished executions (with their store folders).")
@store_option
def run_command(target: str, params: tuple[str, ...], parallelism: int | None, output: str, detach: bool,
                backend: str | None, namespace: str | None, role_arn: str | None, show_logs: bool | None,
                history_limit: int | None) -> None:
    """Compile, publish and run a pipeline on this machine, showing each step as it runs.

    PATH[:ATTR] is a file (pipelines/churn.py) or dotted module, and the Pipeline attribute.

    \b
    Exit code: 0 Succeeded, 1 Failed, 2 bad usage or parameters, 3 Stopped,
    130 detached by a second Ctrl-C.
    Ctrl-C (or SIGTERM) stops the execution: running steps are terminated and it ends
    Stopped. Press Ctrl-C again to return at once instead, leaving the execution running
    in the background without an orchestrator; `stepflow resume` picks it up (steps
    already finished or still running are not run again).

    \b
    Examples:
      stepflow run pipelines/churn.py
      stepflow run pipelines/churn.py:pipeline -p Epochs=3 -p Rate=0.1
      stepflow run pipelines/churn.py --detach
      stepflow run pipelines/churn.py -o json --history-limit 10 > summary.json
    """
    given = parse_params(params)
    pipeline = load_target(target)
    err = console(stderr=True)
    if (backend or pipeline.session.config.backend) == "sagemaker":
        from stepflow.cli.run_sagemaker import run_on_sagemaker

        run_on_sagemaker(pipeline, given, parallelism=parallelism, output=output, detach=detach,
                         role_arn=role_arn, err=err)
        return
    chosen = kubernetes_backend(namespace) if backend == "kubernetes" else None
    published, plan, name = _publish(pipeline, given, err, chosen)
    _run_locally(published, plan, name, given, parallelism, output, detach, err, show_logs, history_limit)


def _run_locally(backend: LocalBackend, plan: Plan, name: str, given: dict[str, str], parallelism: int | None,
                 output: str, detach: bool, err: Console, show_logs: bool | None,
                 history_limit: int | None) -> None:
    """Create the execution and orchestrate it in this process (or in the background: ``detach``);
    the steps run where ``backend`` launches them (processes here, or Jobs)."""
    for resumed in backend.resume_unfinished(name):
        err.print(f"resumed unfinished execution {name}/{resumed} in the background", markup=False)
    try:
        state = backend.create_execution(name, parameters=given, parallelism=parallelism)
    except ParameterError as exc:
        _usage_error(err, exc)
    execution_id = state.execution_id
    if detach:
        backend.resume(name, execution_id)
        if output in DATA_FORMATS:
            click.echo(dump(summary(backend, name, execution_id), output), nl=False)
        else:
            click.echo(execution_id)
            err.print(f"follow it: {command_hint('status', '--watch', execution_id)}", markup=False)
        return
    err.print(f"execution {name}/{execution_id}  (store {backend.pipeline_store(name).root_uri})", markup=False)
    logs = err.is_terminal if show_logs is None else show_logs
    final = _orchestrate(backend, plan, state, err, logs)
    data = summary(backend, name, execution_id)
    if history_limit:
        _trim_history(backend, name, history_limit, keep=execution_id, err=err)
    if not final.terminal:
        err.print(f"detached: {name}/{execution_id} is {final.status}; finish it with "
                  f"`{command_hint('resume', execution_id)}`", markup=False)
        if output in DATA_FORMATS:
            click.echo(dump(data, output), nl=False)
        raise SystemExit(EXIT_DETACHED)
    if output == "text" and not err.is_terminal:
        print_table(console(), steps_table(backend.all_steps(name, execution_id)))
    emit(data, output)
    raise SystemExit(EXIT_CODES.get(data["status"], 1))


def _trim_history(backend: LocalBackend, pipeline: str, limit: int, *, keep: str, err: Console) -> None:
    """``--history-limit``: delete the oldest finished executions beyond ``limit``."""
    from stepflow.cli.delete import delete_execution
    from stepflow.engine import TERMINAL_EXECUTION_STATUSES

    summaries = backend.list_executions(pipeline)["PipelineExecutionSummaries"]  # newest first
    for old in summaries[limit:]:
        if old["PipelineExecutionId"] == keep or old["PipelineExecutionStatus"] not in TERMINAL_EXECUTION_STATUSES:
            continue
        deleted = delete_execution(backend, pipeline, old["PipelineExecutionId"])
        err.print(f"history limit {limit}: deleted {pipeline}/{old['PipelineExecutionId']} "
                  f"({deleted} objects)", markup=False)


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


def _orchestrate(backend: LocalBackend, plan: Plan, state: ExecutionState, err: Console,
                 logs: bool) -> ExecutionState:
    from rich.live import Live

    name, execution_id = state.pipeline_name, state.execution_id
    step_logs = StepLogs(backend, execution_id)
    view = StepView(plan, state, step_logs if logs else None)
    with Interrupts(backend, name, execution_id, err) as interrupts:
        if err.is_terminal:
            with Live(view, console=err, refresh_per_second=4, redirect_stdout=False, redirect_stderr=False):
                def changed(new: ExecutionState) -> None:
                    view.state = new

                return backend.run(name, execution_id, on_change=changed, should_stop=interrupts.should_stop)
        view.logs = None
        lock = threading.Lock()
        progress = PlainProgress(err, view.steps)

        def changed_plain(new: ExecutionState) -> None:
            view.state = new
            with lock:
                progress.update()

        if not logs:
            return backend.run(name, execution_id, on_change=changed_plain, should_stop=interrupts.should_stop)
        with LogStreamer(err, step_logs, view, lock):
            return backend.run(name, execution_id, on_change=changed_plain, should_stop=interrupts.should_stop)


COMMANDS = [run_command]
