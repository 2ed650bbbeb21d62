"""``stepflow up``: the GitOps loop on this machine, ``kubectl get pipelines`` in the terminal.

The loop is :class:`stepflow.gitops.embedded.EmbeddedLoop`; this module builds its
reconciler, shows what it does (a live table on a terminal, one line per change in a pipe
or CI log) and turns ``--once`` into an exit code.
"""

from __future__ import annotations

import asyncio
import signal
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from stepflow.cli.common import (
    DATA_FORMATS,
    STATUS_STYLES,
    command_hint,
    console,
    dump,
    output_option,
    print_outcome,
    print_table,
    store_option,
    summary,
)

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    from stepflow.gitops.embedded import EmbeddedLoop, Row

# 130 is what a shell reports for a command ended by Ctrl-C.
EXIT_INTERRUPTED = 130
_READY_STYLES = {"True": "green", "False": "bold red", "Unknown": "yellow"}


def _age(moment: datetime | None, now: datetime) -> str:
    """kubectl's short ages: 45s, 12m, 3h, 5d."""
    if moment is None:
        return ""
    seconds = max(0, int((now - moment).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def rows_table(rows: list[Row]) -> Table:
    from rich.table import Table
    from rich.text import Text

    now = datetime.now(UTC)
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("NAME", "REVISION", "READY", "PHASE", "STEPS", "LAST RUN", "AGE"):
        table.add_column(column, no_wrap=True)
    table.add_column("MESSAGE", overflow="fold")
    for row in rows:  # Text, not markup: names and messages are the user's text
        table.add_row(row.name, row.revision, Text(row.ready, style=_READY_STYLES.get(row.ready, "")),
                      Text(row.phase, style=STATUS_STYLES.get(row.phase, "")), row.steps,
                      _age(row.last_run, now) + (" ago" if row.last_run else ""), _age(row.created, now),
                      Text(row.message))
    return table


def row_line(row: Row) -> str:
    parts = [f"ready={row.ready or '-'}", f"revision={row.revision or '-'}", f"phase={row.phase or '-'}",
             f"steps={row.steps or '-'}"]
    return f"{row.name}: {' '.join(parts)}" + (f" — {row.message}" if row.message else "")


class _TableView:
    """The live table; rich redraws it a few times a second, so ages move on their own."""

    def __init__(self, loop: EmbeddedLoop) -> None:
        self.loop = loop

    def __rich__(self) -> Any:
        return rows_table(self.loop.rows())


class PlainView:
    """One line per change of a pipeline's row, and one per event: for pipes and CI logs."""

    def __init__(self, out: Console) -> None:
        self.out = out
        self.loop: EmbeddedLoop | None = None
        self._seen: dict[str, str] = {}

    def changed(self) -> None:
        if self.loop is None:
            return
        for row in self.loop.rows():
            if not row.ready:
                continue  # found, not reconciled yet: its first event says more
            line = row_line(row)
            if self._seen.get(row.name) != line:
                self._seen[row.name] = line
                self.out.print(f"{_clock()} {line}", markup=False)

    def event(self, name: str, event: Any) -> None:
        self.out.print(f"{_clock()} {name}: {event.type} {event.reason}: {event.message}", markup=False)


def _clock() -> str:
    return datetime.now().strftime("%H:%M:%S")


def _build_loop(directory: Path, interval: float | None, view: PlainView | None,
                on_event: Any) -> EmbeddedLoop:
    from stepflow.cache import cache_dir
    from stepflow.config import load_config
    from stepflow.gitops.embedded import EmbeddedLoop
    from stepflow.gitops.reconciler import Reconciler
    from stepflow.gitops.sandbox import SandboxSettings
    from stepflow.storage import open_store

    config = load_config()
    work_dir = cache_dir() / "up"
    # The build stays a separate, scrubbed, limited process, but runs as you: `up` builds
    # your own repositories on your machine, and their steps run as you anyway.
    sandbox = SandboxSettings(work_dir=work_dir / "sandbox", uid=None, gid=None)
    reconciler = Reconciler(work_dir=work_dir, integrity_key=config.integrity_key,
                            default_s3_root_uri=config.s3_root_uri, s3_endpoint_url=config.s3_endpoint_url,
                            sandbox_settings=sandbox)
    return EmbeddedLoop(directory, reconciler=reconciler,
                        state_store=open_store(config.s3_root_uri, config.s3_endpoint_url),
                        interval=interval, on_change=view.changed if view else None, on_event=on_event)


async def _main(loop: EmbeddedLoop, once: bool) -> bool:
    """Run until done (``once``) or until SIGINT/SIGTERM; True when interrupted."""
    stop = asyncio.Event()
    running = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        running.add_signal_handler(signum, stop.set)
    try:
        work = asyncio.create_task(loop.run_once() if once else loop.run_forever(stop))
        stopper = asyncio.create_task(stop.wait())
        await asyncio.wait({work, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if work.done():
            stopper.cancel()
            work.result()
            return stop.is_set()
        loop.stop()
        if once:
            work.cancel()
            await asyncio.gather(work, return_exceptions=True)
            await loop.shutdown()
        else:
            await work
        return True
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            running.remove_signal_handler(signum)
        loop.reconciler.close()


def _report_failures(loop: EmbeddedLoop, out: Console) -> None:
    """For ``--once``: why each pipeline is not Ready, and each failed execution's failing step."""
    from stepflow.backends.local import LocalBackend

    for problem in loop.problems:
        out.print(f"error ({problem.reason}): {problem}", style="bold red", markup=False)
    statuses = loop.statuses()
    for row in loop.rows():
        if row.ready in ("True", "") or row.name not in statuses:
            continue
        out.print(f"{row.name}: not Ready — {row.message}", style="bold red", markup=False)
        build = statuses[row.name].get("lastBuild") or {}
        if build.get("reason") and build.get("file"):
            where = f"{build['file']}:{build['line']}" if build.get("line") else build["file"]
            out.print(f"  at {where} in {build.get('revision')}", markup=False)
    reported = {report.name for report in loop.reports}
    for name, status in statuses.items():
        last = status.get("lastExecution") or {}
        if last.get("phase") and last["phase"] != "Succeeded" and last.get("name") not in reported:
            out.print(f"{name}: latest execution {last['name']} is {last['phase']} (from an earlier pass); "
                      f"see: {command_hint('status', last['name'])}", style="bold red", markup=False)
    for report in loop.reports:
        if report.phase == "Succeeded":
            continue
        pipeline_name = loop.pipeline_name(report.pipeline, report.name)
        backend = loop.backend(report.pipeline)
        # Only a local backend keeps a record to summarise; without one, the short line below.
        if pipeline_name is not None and isinstance(backend, LocalBackend):
            try:
                print_outcome(out, summary(backend, pipeline_name, report.name))
                continue
            except Exception:  # noqa: BLE001 - the execution record itself is unreadable
                pass
        out.print(f"{report.pipeline}/{report.name}: {report.phase} — {report.failure_reason}",
                  style="bold red", markup=False)


def row_data(row: Row) -> dict[str, Any]:
    """A table row as ``-o json|yaml`` shows it."""
    from stepflow import timefmt

    return {"name": row.name, "revision": row.revision or None, "ready": row.ready or None,
            "phase": row.phase or None, "steps": row.steps or None,
            "lastRun": timefmt.seconds(row.last_run) if row.last_run else None,
            "created": timefmt.seconds(row.created) if row.created else None, "message": row.message or None}


@click.command("up")
@click.argument("directory", metavar="[DIR]", default=".", type=click.Path(path_type=Path))
@click.option("--once", is_flag=True,
              help="One reconcile per pipeline, wait for the executions it started, print the table and "
                   "exit: 0 when every pipeline is Ready and its latest execution Succeeded, else 1.")
@click.option("--interval", metavar="DURATION",
              help="Check every source this often (30s, 1m, ...), instead of each spec.source.interval.")
@click.option("--no-live", is_flag=True, help="Print one line per change instead of a live table.")
@output_option()
@store_option
def up_command(directory: Path, once: bool, interval: str | None, no_live: bool, output: str) -> None:
    """Run the GitOps loop on this machine for every Pipeline manifest under DIR.

    Each manifest (the same YAML as the Kubernetes resource; spec.source.url may be a local
    path, relative to the manifest) is reconciled on its interval: a new commit is built in
    a separate process, published to the store, and run on this machine when its trigger
    says so. State lives in the store (<store>/.stepflow-up/), so a restart rebuilds and
    re-runs nothing that is current. YAML that is not a stepflow Pipeline (Helm templates,
    other resources) is ignored.

    \b
    Ctrl-C stops the loop; running steps keep going and their executions resume on the
    next `stepflow up` (or `stepflow resume`).

    \b
    Exit code with --once: 0 when every pipeline is Ready and its latest execution
    Succeeded; 1 otherwise (the reasons are printed); 130 interrupted.

    \b
    Examples:
      stepflow up examples/manifests
      stepflow up --once examples/manifests -o json
      stepflow up deploy/ --interval 30s --no-live
    """
    from stepflow.gitops.manifests import API_VERSION, KIND, discover
    from stepflow.timefmt import parse_duration

    every = parse_duration(interval, "--interval", 60.0) if interval else None
    err = console(stderr=True)
    manifests, problems = discover(directory)
    if not manifests and not problems:
        where = f"no stepflow Pipeline manifest (apiVersion: {API_VERSION}, kind: {KIND}) under {directory}"
        if once:
            err.print(f"error (NoManifests): {where}; pass the folder holding them "
                      "(e.g. `stepflow up examples/manifests`)", style="bold red", markup=False)
            raise SystemExit(1)
        err.print(f"{where} yet: watching for them (Ctrl-C to stop)", markup=False)
    live = err.is_terminal and not no_live and output not in DATA_FORMATS
    plain = None if live else PlainView(err)
    loop = _build_loop(directory, every, plain, on_event=None)
    if plain is not None:
        plain.loop = loop
        loop.on_event = plain.event
    if live:
        interrupted = _run_live(loop, once, err)
    else:
        interrupted = asyncio.run(_main(loop, once))
    if interrupted:
        err.print(f"stopped: running steps keep going; their executions resume on the next "
                  f"`{command_hint('up', str(directory))}`", markup=False)
        raise SystemExit(EXIT_INTERRUPTED)
    if once:
        rows = loop.rows()
        if output in DATA_FORMATS:
            click.echo(dump([row_data(r) for r in rows], output), nl=False)
        else:
            print_table(console(), rows_table(rows))
        healthy = loop.healthy()
        if not healthy:
            _report_failures(loop, err)
        raise SystemExit(0 if healthy else 1)


def _run_live(loop: EmbeddedLoop, once: bool, err: Console) -> bool:
    from rich.live import Live

    with Live(_TableView(loop), console=err, refresh_per_second=2, transient=once,
              redirect_stdout=False, redirect_stderr=False) as live:
        def event(name: str, ev: Any) -> None:
            style = "yellow" if ev.type == "Warning" else "dim"
            live.console.print(f"{_clock()} {name}: {ev.reason}: {ev.message}", style=style, markup=False)

        loop.on_event = event
        return asyncio.run(_main(loop, once))


COMMANDS = [up_command]
