"""Where in the user's code a step failed, for its log and its failure reason.

The compiler pickles the user's code with project-relative file names
(``pipelines/churn.py``; see ``stepflow.compiler.pickling``), while installed code, the
standard library and stepflow itself carry absolute paths: a relative name is the user's.
"""

from __future__ import annotations

import linecache
import os
import sys
import traceback
from types import TracebackType

_RUNTIME_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def _is_users(filename: str) -> bool:
    return not os.path.isabs(filename) and not filename.startswith("<")


def location(exc: BaseException) -> str | None:
    """``pipelines/boom.py:14 in crunch``: the innermost frame of the user's project."""
    found = None
    for frame, lineno in traceback.walk_tb(exc.__traceback__):
        code = frame.f_code
        if _is_users(code.co_filename):
            found = f"{code.co_filename}:{lineno} in {code.co_name}"
    return found


def print_traceback(exc: BaseException) -> None:
    """The traceback from the user's function down, without the runtime's own frames; the
    source lines come from the step's workspace when it ships one."""
    tb: TracebackType | None = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename.startswith(_RUNTIME_DIR):
        tb = tb.tb_next
    linecache.checkcache()
    traceback.print_exception(type(exc), exc, tb or exc.__traceback__, file=sys.stderr)


def missing_module_hint(exc: BaseException) -> str | None:
    """How to fix a ModuleNotFoundError in a step, which is almost always one of two things."""
    missing = exc if isinstance(exc, ModuleNotFoundError) else exc.__cause__ or exc.__context__
    if not isinstance(missing, ModuleNotFoundError) or not missing.name:
        return None
    top = missing.name.partition(".")[0]
    return (f"the step's environment has no module '{top}'. If it is a folder or file of your project, "
            "ship the project with the step: @step(include_local_workdir=True); if it is a package, "
            "list it in the step's dependencies (@step(dependencies=\"requirements.txt\"))")
