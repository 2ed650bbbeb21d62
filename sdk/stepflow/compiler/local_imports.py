"""A project module imported inside a step's body, in a step that does not ship the project.

cloudpickle carries the step's function by value, and with it the project modules it
references as globals; an ``import helpers`` *inside* the body runs only in the step's
process, where ``helpers`` exists only if the step ships the project
(``include_local_workdir=True``). Without this check the pipeline compiles, then fails at
run time with a bare ``ModuleNotFoundError``.
"""

from __future__ import annotations

import dis
import importlib.util
from collections.abc import Iterator
from pathlib import Path
from types import CodeType

from stepflow.errors import SourceLocation, ValidationError
from stepflow.workflow.callsite import display_path
from stepflow.workflow.function_step import FunctionStep

_INSTALLED = {"site-packages", "dist-packages"}


def _imports(code: CodeType) -> Iterator[tuple[str, int | None]]:
    """Absolute ``import x`` / ``from x import y`` in ``code`` and the code nested in it."""
    level = None
    for instruction in dis.get_instructions(code):
        if instruction.opname == "LOAD_CONST" and isinstance(instruction.argval, int):
            level = instruction.argval
        elif instruction.opname == "IMPORT_NAME":
            if level == 0:
                yield instruction.argval, instruction.positions.lineno if instruction.positions else None
            level = None
    for const in code.co_consts:
        if isinstance(const, CodeType):
            yield from _imports(const)


def _project_file(module: str, root: Path) -> str | None:
    """The project file ``module`` would be imported from here, or None (installed, absent)."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    origin = spec.origin if spec is not None else None
    if not origin or origin in ("built-in", "frozen"):
        return None
    path = Path(origin).resolve()
    if _INSTALLED & set(path.parts) or root not in path.parents:
        return None
    return str(path)


def check_local_imports(step: FunctionStep, step_name: str, include_local_workdir: bool, root: Path) -> None:
    """Raise when ``step`` imports a project module in its body without shipping the project."""
    if include_local_workdir:
        return
    code = getattr(step.func, "__code__", None)
    if code is None:
        return
    for module, line in _imports(code):
        top = module.partition(".")[0]
        found = _project_file(top, root.resolve())
        if found is None:
            continue
        where = SourceLocation(display_path(code.co_filename), line)
        raise ValidationError(
            f"Step '{step_name}' imports '{module}' inside its function, and '{top}' is part of your "
            f"project ({display_path(found)}), which the step does not ship: it would fail at run time "
            f"with ModuleNotFoundError. Add include_local_workdir=True to its @step (or set "
            f"IncludeLocalWorkDir in the configuration), or install '{top}' as a package and list it "
            f"in the step's dependencies.", location=where, reason="LocalModuleNotShipped")
