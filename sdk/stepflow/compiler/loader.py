"""Load ``PATH[:ATTR]`` (a file or a dotted module) and find the Pipeline in it.

Importing runs the user's module; every way that can fail becomes a ``LoadError`` whose
``reason`` says which (SyntaxError, ModuleNotFound, ImportError, ModuleError,
NoPipeline, AmbiguousPipeline, NotAPipeline) and whose location is the user's line.
Bytecode is not written: loading never adds files to the user's checkout.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import traceback
from pathlib import Path
from types import ModuleType

from stepflow.errors import SourceLocation, StepflowError
from stepflow.workflow.callsite import display_path, project_root, set_project_root
from stepflow.workflow.pipeline import Pipeline


class LoadError(StepflowError):
    reason = "LoadFailed"


def split_target(target: str) -> tuple[str, str | None]:
    """``"pipelines/churn.py:pipeline"`` → (``"pipelines/churn.py"``, ``"pipeline"``)."""
    path, sep, attr = target.rpartition(":")
    if sep and attr.isidentifier() and path:
        return path, attr
    return target, None


def load_pipeline(target: str, *, attr: str | None = None,
                  workdir: str | os.PathLike[str] | None = None) -> Pipeline:
    """The pipeline named by ``attr`` (or the ``:ATTR`` suffix), or the module's only one."""
    path, suffix_attr = split_target(target)
    attr = attr or suffix_attr
    module = import_target(path, workdir=workdir)
    pipelines = find_pipelines(module)
    where = path
    if attr is not None:
        if not hasattr(module, attr):
            raise LoadError(
                f"{where} has no attribute '{attr}'. Pipelines found: "
                f"{', '.join(pipelines) or 'none'}.", reason="NoPipeline")
        value = getattr(module, attr)
        if not isinstance(value, Pipeline):
            raise LoadError(
                f"{where}:{attr} is a {type(value).__name__}, not a Pipeline. Pipelines "
                f"found: {', '.join(pipelines) or 'none'}.", reason="NotAPipeline")
        return value
    if not pipelines:
        raise LoadError(
            f"No Pipeline found in {where}: define one at module level, e.g. "
            "pipeline = Pipeline(name=..., steps=[...]).", reason="NoPipeline")
    if len(pipelines) > 1:
        names = ", ".join(f"{where}:{n}" for n in pipelines)
        raise LoadError(
            f"{where} defines several pipelines ({', '.join(pipelines)}); choose one: {names}.",
            reason="AmbiguousPipeline")
    return next(iter(pipelines.values()))


def find_pipelines(module: ModuleType) -> dict[str, Pipeline]:
    """Module-level Pipeline objects by attribute name (an object bound twice counts once)."""
    found: dict[str, Pipeline] = {}
    seen: set[int] = set()
    for name, value in vars(module).items():
        if isinstance(value, Pipeline) and id(value) not in seen and not name.startswith("_"):
            seen.add(id(value))
            found[name] = value
    return found


def import_target(target: str, *, workdir: str | os.PathLike[str] | None = None) -> ModuleType:
    root = Path(workdir).resolve() if workdir is not None else _default_root(target)
    set_project_root(root)
    # A build's root is a checkout whose path means nothing to the person reading the
    # message; on a laptop it is the folder they ran the command from.
    in_root = "the repository" if workdir is not None else str(root)
    sys.dont_write_bytecode = True
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    try:
        if target.endswith(".py") or os.sep in target or "/" in target:
            return _import_file(Path(target) if Path(target).is_absolute() else root / target, in_root)
        return importlib.import_module(target)
    except StepflowError:
        raise
    except SyntaxError as exc:
        raise LoadError(
            f"Syntax error in {display_path(exc.filename or target)}: {exc.msg}. Fix the code.",
            location=SourceLocation(display_path(exc.filename or target), exc.lineno),
            reason="SyntaxError") from exc
    except ModuleNotFoundError as exc:
        missing_target = exc.name is not None and (target == exc.name
                                                    or target.startswith(exc.name + "."))
        if missing_target:
            raise LoadError(
                f"No module named '{target}' in {in_root}: give a file path (relative to the "
                "project root) or a dotted module importable from it.",
                reason="ModuleNotFound") from exc
        raise LoadError(
            f"Importing {target} failed: {exc}. Declare the package in the project's "
            "requirements (or fix the import).", location=_user_frame(exc),
            reason="ImportError") from exc
    except ImportError as exc:
        raise LoadError(f"Importing {target} failed: {exc}.", location=_user_frame(exc),
                        reason="ImportError") from exc
    except Exception as exc:
        raise LoadError(
            f"Importing {target} raised {type(exc).__name__}: {exc}. Module-level code of a "
            "pipeline module must run without errors.", location=_user_frame(exc),
            reason="ModuleError") from exc


def _default_root(target: str) -> Path:
    """The current directory, unless the target is a file outside it: then its folder,
    so the module's own helpers still count as project code (pickled by value)."""
    cwd = Path.cwd().resolve()
    path = Path(target)
    if path.suffix == ".py" and path.is_absolute():
        resolved = path.resolve()
        if cwd not in resolved.parents:
            return resolved.parent
    return cwd


def _import_file(path: Path, in_root: str) -> ModuleType:
    if not path.is_file():
        raise LoadError(f"No such file: {display_path(str(path))} in {in_root}.", reason="ModuleNotFound")
    name = _module_name(path)
    if name is not None:
        return importlib.import_module(name)
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module
    spec.loader.exec_module(module)
    return module


def _module_name(path: Path) -> str | None:
    """The dotted name of a file inside the project (``pipelines/churn.py`` → ``pipelines.churn``)."""
    try:
        parts = path.resolve().with_suffix("").relative_to(project_root()).parts
    except ValueError:
        return None
    if parts and all(p.isidentifier() for p in parts):
        return ".".join(parts)
    return None


def _user_frame(exc: BaseException) -> SourceLocation | None:
    """The innermost traceback frame inside the project: where the user's code failed."""
    root = str(project_root()) + os.sep
    location = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename.startswith(root) and "site-packages" not in frame.filename:
            location = SourceLocation(display_path(frame.filename), frame.lineno)
    return location
