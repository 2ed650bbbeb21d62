"""``docs/CLI.md``, generated from the click commands so the reference cannot drift.

``python -m stepflow.cli.reference > docs/CLI.md`` writes it; a test fails when the file
differs from what the commands say. Each command's section is its ``--help`` text, as a
user sees it at 100 columns.
"""

from __future__ import annotations

import click

from stepflow.cli.main import main

_WIDTH = 100


def _walk(command: click.Command, path: list[str]) -> list[tuple[list[str], click.Command]]:
    out = [(path, command)]
    if isinstance(command, click.Group):
        for name in sorted(command.commands):
            out += _walk(command.commands[name], [*path, name])
    return out


def _help(path: list[str]) -> str:
    """``stepflow A B --help`` for ``path == ["stepflow", "A", "B"]``."""
    ctx = click.Context(main, info_name=path[0], max_content_width=_WIDTH, terminal_width=_WIDTH,
                        **main.context_settings)
    for name in path[1:]:
        group = ctx.command
        assert isinstance(group, click.Group)
        ctx = click.Context(group.commands[name], info_name=name, parent=ctx, max_content_width=_WIDTH,
                            terminal_width=_WIDTH)
    return ctx.command.get_help(ctx).rstrip()


def reference() -> str:
    """The whole reference, as Markdown."""
    lines = ["# `stepflow` command reference", "",
             "Generated from the commands by `python -m stepflow.cli.reference > docs/CLI.md`; "
             "`tests/cli/test_reference.py` fails when it is out of date. Every command also "
             "prints this with `--help`.", ""]
    entries = _walk(main, ["stepflow"])
    lines += [f"- [`{' '.join(path)}`](#{'-'.join(path)})" for path, _ in entries[1:]]
    for path, _command in entries:
        lines += ["", f"<a id=\"{'-'.join(path)}\"></a>", f"## `{' '.join(path)}`", "", "```text",
                  _help(path), "```"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    click.echo(reference(), nl=False)
