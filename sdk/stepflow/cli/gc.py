"""``stepflow gc``: delete a pipeline's old published artifacts (policy in stepflow.compiler.gc)."""

from __future__ import annotations

import click

from stepflow.cli.common import console, local_backend, store_option


def _size(n: int) -> str:
    value, unit = float(n), "B"
    for bigger in ("KiB", "MiB", "GiB"):
        if value < 1024:
            break
        value, unit = value / 1024, bigger
    return f"{n} B" if unit == "B" else f"{value:.1f} {unit}"


@click.command("gc")
@click.argument("pipeline")
@click.option("--keep", type=int, default=5, show_default=True,
              help="How many of the newest published definitions keep their artifacts "
                   "(the current one and those of unfinished executions are always kept).")
@click.option("--dry-run", is_flag=True, help="Report what would be deleted; delete nothing.")
@store_option
def gc_command(pipeline: str, keep: int, dry_run: bool) -> None:
    """Delete PIPELINE's artifact folders and definitions that no kept definition uses.

    Execution folders (results, logs, records) are never touched (`stepflow delete
    execution` removes those). PIPELINE may also be the `stepflow up` manifest's name.

    \b
    Examples:
      stepflow gc churn --dry-run
      stepflow gc churn --keep 2
    """
    from stepflow.cli.executions import resolve_pipeline
    from stepflow.compiler.gc import collect_garbage
    from stepflow.session import Session

    store = Session().store
    pipeline = resolve_pipeline(local_backend(), pipeline)
    report = collect_garbage(store, pipeline, keep=keep, dry_run=dry_run)
    verb = "would delete" if dry_run else "deleted"
    out = console()
    out.print(f"{pipeline} in {store.root_uri}: kept {report.kept_definitions} definition(s) and "
              f"{report.kept_objects} object(s); {verb} {report.deleted_definitions} definition(s), "
              f"{report.deleted_objects} object(s), {_size(report.deleted_bytes)}", markup=False)
    if dry_run:
        out.print("dry run: nothing was deleted", markup=False)


COMMANDS = [gc_command]
