"""The ``stepflow`` command. Each module here that defines ``COMMANDS`` adds subcommands."""
