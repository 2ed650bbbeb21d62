"""``python -m stepflow``: the ``stepflow`` command, for when the venv's bin is not on PATH."""

from stepflow.cli.main import main

main()
