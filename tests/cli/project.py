"""A folder holding pipeline modules, and how to run the installed `stepflow` on it.

Every command is a real process with the user's configuration files ignored, a fresh
file:// store and a private cache (where the local backend keeps step logs and locks).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.fixtures import LAPTOP_STEPS

STEPFLOW = str(Path(sys.executable).parent / "stepflow")

HEADER = """
from stepflow.workflow.function_step import step
from stepflow.workflow.pipeline import Pipeline
"""


class Project:
    def __init__(self, tmp_path: Path, *, store_in_env: bool = True) -> None:
        self.dir = tmp_path / "project"
        self.dir.mkdir()
        self.store = (tmp_path / "store").as_uri()
        config = tmp_path / "config.yaml"
        config.write_text("# nothing configured\n")
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("STEPFLOW_", "AWS_"))}
        self.env.update({"STEPFLOW_CONFIG": str(config), "STEPFLOW_USER_CONFIG": "", "STEPFLOW_ADMIN_CONFIG": "",
                         "STEPFLOW_CACHE_DIR": str(tmp_path / "cache"), "COLUMNS": "250", **LAPTOP_STEPS})
        if store_in_env:
            self.env["STEPFLOW_S3_ROOT_URI"] = self.store

    def write(self, source: str, name: str = "flow.py", header: str = HEADER) -> str:
        path = self.dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(header + textwrap.dedent(source))
        return name

    def line_of(self, name: str, text: str) -> int:
        """The line number of the first line of ``name`` containing ``text``."""
        lines = (self.dir / name).read_text().splitlines()
        return next(i for i, line in enumerate(lines, 1) if text in line)

    def run(self, *args: str, timeout: float = 180, command: list[str] | None = None,
            cwd: Path | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([*(command or [STEPFLOW]), *args], cwd=cwd or self.dir, env=self.env,
                              capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)

    def popen(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen([STEPFLOW, *args], cwd=self.dir, env=self.env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
