"""``stepflow``: the click group. Subcommands live in sibling modules.

Any module of ``stepflow.cli`` with a ``COMMANDS`` list of click commands is registered,
so a new command is a new module, not an edit here. Errors a user can cause print one
paragraph (what, where, how to fix) and exit 1; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from typing import Any

import click

from stepflow.errors import StepflowError


def error_paragraph(exc: StepflowError) -> str:
    where = f"{exc.location}: " if exc.location else ""
    return f"error ({exc.reason}): {where}{exc.message}"


class StepflowGroup(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except StepflowError as exc:
            if ctx.find_root().params.get("debug"):
                raise
            from rich.console import Console

            Console(stderr=True, highlight=False, soft_wrap=True).print(
                error_paragraph(exc), style="bold red", markup=False)
            sys.exit(1)


@click.group(cls=StepflowGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-paragraph errors.")
@click.version_option(package_name="stepflow")
def main(debug: bool) -> None:
    """Pipeline-as-code for @step-decorated Python functions."""


def _register_commands() -> None:
    import stepflow.cli as package

    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        if info.name == "main":
            continue
        module = importlib.import_module(f"stepflow.cli.{info.name}")
        for command in getattr(module, "COMMANDS", []):
            main.add_command(command)


_register_commands()

if __name__ == "__main__":
    main()
