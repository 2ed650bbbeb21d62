"""``stepflow completion bash|zsh|fish``: the shell's completion script, as kubectl's.

click generates the scripts; the commands' arguments complete execution ids, step names
and pipeline names from the store (``shell_complete`` in ``executions.py``).
"""

from __future__ import annotations

import click

_INSTALL = {
    "bash": 'echo \'eval "$(stepflow completion bash)"\' >> ~/.bashrc',
    "zsh": 'echo \'eval "$(stepflow completion zsh)"\' >> ~/.zshrc',
    "fish": "stepflow completion fish > ~/.config/fish/completions/stepflow.fish",
}


@click.command("completion")
@click.argument("shell", type=click.Choice(sorted(_INSTALL)))
def completion_command(shell: str) -> None:
    """Print the shell completion script: commands, options, execution ids and step names.

    \b
    Examples:
      eval "$(stepflow completion bash)"
      echo 'eval "$(stepflow completion zsh)"' >> ~/.zshrc
      stepflow completion fish > ~/.config/fish/completions/stepflow.fish
    """
    from click.shell_completion import get_completion_class

    from stepflow.cli.main import main

    cls = get_completion_class(shell)
    assert cls is not None  # the choice above lists only shells click supports
    click.echo(cls(main, {}, "stepflow", "_STEPFLOW_COMPLETE").source())


COMMANDS = [completion_command]
