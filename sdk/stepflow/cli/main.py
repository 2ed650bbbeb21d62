"""``stepflow``: the click group. Subcommands live in sibling modules.

Any module of ``stepflow.cli`` with a ``COMMANDS`` list of click commands is registered,
so a new command is a new module, not an edit here. Errors a user can cause print one
paragraph (what, where, how to fix) and exit 1; ``--debug`` (before or after the
subcommand) shows the traceback instead. Ctrl-C or SIGTERM before a command has set up
its own handling exits 130 or 143 without a traceback, as a shell expects.
"""

from __future__ import annotations

import importlib
import pkgutil
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any

import click

from stepflow.errors import StepflowError

#: What a shell reports for a command ended by SIGINT (Ctrl-C) and by SIGTERM.
EXIT_SIGINT = 128 + signal.SIGINT
EXIT_SIGTERM = 128 + signal.SIGTERM


def error_paragraph(exc: StepflowError) -> str:
    where = f"{exc.location}: " if exc.location else ""
    return f"error ({exc.reason}): {where}{exc.message}"


class Terminated(BaseException):
    """SIGTERM before a command installed its own handler (a cancelled CI job)."""


def _terminate(signum: int, frame: object) -> None:
    raise Terminated


class StepflowGroup(click.Group):
    def main(self, args: Sequence[str] | None = None, *posargs: Any, **kwargs: Any) -> Any:
        words = list(sys.argv[1:] if args is None else args)
        # --debug is the group's option; people add it where the error happened, after the
        # subcommand. Move it in front (up to a `--`, after which words are arguments).
        end = words.index("--") if "--" in words else len(words)
        if "--debug" in words[:end]:
            words = ["--debug", *(w for i, w in enumerate(words) if w != "--debug" or i >= end)]
        if threading.current_thread() is threading.main_thread():  # signals are the main thread's
            signal.signal(signal.SIGTERM, _terminate)
        return super().main(words, *posargs, **kwargs)

    def invoke(self, ctx: click.Context) -> Any:
        debug = bool(ctx.params.get("debug"))
        try:
            return super().invoke(ctx)
        except StepflowError as exc:
            if debug:
                raise
            _stderr().print(error_paragraph(exc), style="bold red", markup=False)
            sys.exit(1)
        except (KeyboardInterrupt, Terminated) as exc:
            if debug:
                raise
            _stderr().print("interrupted", markup=False)
            sys.exit(EXIT_SIGINT if isinstance(exc, KeyboardInterrupt) else EXIT_SIGTERM)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # click cuts each summary to fit one line, often mid-sentence; the formatter wraps
        # the column instead, so the whole first sentence is shown.
        rows = [(name, command.get_short_help_str(limit=500)) for name, command in
                ((n, self.get_command(ctx, n)) for n in self.list_commands(ctx))
                if command is not None and not command.hidden]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


def _stderr() -> Any:
    from rich.console import Console

    return Console(stderr=True, highlight=False, soft_wrap=True)


@click.group(cls=StepflowGroup, context_settings={"help_option_names": ["-h", "--help"]},
             epilog="Run `stepflow COMMAND --help` for a command's options and examples. "
                    "Store: --store URI or STEPFLOW_S3_ROOT_URI (see `stepflow doctor`).")
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-paragraph errors (also after the command).")
@click.version_option(package_name="stepflow")
def main(debug: bool) -> None:
    """Pipeline-as-code for @step-decorated Python functions.

    \b
    Examples:
      stepflow validate pipelines/churn.py
      stepflow run pipelines/churn.py -p Epochs=3
      stepflow executions
      stepflow logs -f EXECUTION STEP
      stepflow up examples/manifests
    """


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
