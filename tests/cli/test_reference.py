"""docs/CLI.md is what the commands say: regenerate it when a command changes."""

from __future__ import annotations

from pathlib import Path

from stepflow.cli.reference import reference

DOC = Path(__file__).resolve().parents[2] / "docs" / "CLI.md"


def test_the_cli_reference_is_up_to_date():
    assert DOC.read_text() == reference(), (
        "docs/CLI.md is out of date: run `.venv/bin/python -m stepflow.cli.reference > docs/CLI.md`")


def test_the_reference_covers_every_command_with_its_examples():
    text = DOC.read_text()
    for command in ("run", "logs", "status", "executions", "pipelines", "delete execution", "doctor", "completion",
                    "up", "graph", "validate"):
        section = text.split(f"## `stepflow {command}`", 1)[1].split("\n## ", 1)[0]
        assert "Examples:" in section, command
