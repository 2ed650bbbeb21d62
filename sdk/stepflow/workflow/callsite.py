"""Where in the user's code a step was made, so compile errors can point there.

Errors are raised at compile time, long after the user's line ran; recording the call
site when a step is created is the only way to name the file and line later. Paths are
shown relative to the project root (the build's workdir, else the current directory) so
messages read the same on a laptop and in the operator's sandbox.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from types import FrameType

from stepflow.errors import SourceLocation

_STEPFLOW_DIR = str(Path(__file__).resolve().parent.parent) + os.sep
_project_root: Path | None = None


def set_project_root(path: str | os.PathLike[str] | None) -> None:
    """Name the folder that holds the user's project (None: the current directory)."""
    global _project_root
    _project_root = Path(path).resolve() if path is not None else None


def project_root() -> Path:
    return _project_root if _project_root is not None else Path.cwd().resolve()


def display_path(filename: str) -> str:
    """The file relative to the project root when it is inside it, else as given."""
    try:
        return Path(filename).resolve().relative_to(project_root()).as_posix()
    except ValueError:
        return filename


def caller_location() -> SourceLocation | None:
    """The innermost frame outside stepflow: the user's line that called into us."""
    frame: FrameType | None = sys._getframe(1)
    while frame is not None:
        filename = frame.f_code.co_filename
        if not filename.startswith(_STEPFLOW_DIR) and not filename.startswith("<frozen"):
            return SourceLocation(display_path(filename), frame.f_lineno)
        frame = frame.f_back
    return None
