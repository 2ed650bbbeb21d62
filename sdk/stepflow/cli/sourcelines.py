"""The user's source lines next to a failed step's location, read from the project here.

A step's traceback names project files relative to the project root (``pipelines/boom.py``,
as the compiler pickles them); the step may not have had the file to show the line, but
the person reading the log usually runs ``stepflow`` from that root, where it is.
"""

from __future__ import annotations

import re
from pathlib import Path

_FRAME = re.compile(r'^(\s*)File "([^"<][^"]*)", line (\d+), in .*$')
#: The location the runtime appends to a failure reason: ``(at pipelines/boom.py:14 in crunch)``.
_AT = re.compile(r"\(at ([^\s:()]+):(\d+) in [^)]+\)")


def source_line(path: str, line: int, root: Path | None = None) -> str | None:
    """Line ``line`` of the project file ``path`` (relative to ``root``, default: here)."""
    if Path(path).is_absolute():
        return None
    try:
        lines = ((root or Path.cwd()) / path).read_text(errors="replace").splitlines()
    except OSError:
        return None
    return lines[line - 1].strip() if 0 < line <= len(lines) else None


def annotate_traceback(text: str, root: Path | None = None) -> str:
    """``text`` with the source line under each project frame that lacks one."""
    lines = text.splitlines(keepends=True)
    out = []
    for i, current in enumerate(lines):
        out.append(current)
        match = _FRAME.match(current.rstrip("\n"))
        if not match:
            continue
        following = lines[i + 1] if i + 1 < len(lines) else ""
        indent = match.group(1)
        if following.startswith(indent + "  ") and not _FRAME.match(following.rstrip("\n")):
            continue  # the runtime already showed it
        source = source_line(match.group(2), int(match.group(3)), root)
        if source:
            out.append(f"{indent}  {source}\n")
    return "".join(out)


def failure_location(reason: str | None) -> tuple[str, int] | None:
    """The project file and line named in a step's failure reason, if any."""
    match = _AT.search(reason or "")
    return (match.group(1), int(match.group(2))) if match else None
