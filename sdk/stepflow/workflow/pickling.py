"""Make cloudpickle output self-contained and byte-stable across processes.

Used when an @step function is called (:mod:`stepflow.workflow.capture`). Two things,
both needed for a step to run without the user's workspace and for the same commit to
produce the same bytes in a new process:

* modules of the user's project are pickled by value (``register_pickle_by_value``),
  everything installed (site-packages, the standard library, stepflow) by reference;
* a by-value function carries its module's ``__file__``; we make it project-relative;
* cloudpickle names every by-value code object's file ``<dynamic-code>``, so a failing
  step's traceback could not say where; we keep the project-relative path instead
  (``pipelines/churn.py``: the same bytes on every machine, and the runtime finds the
  source line when the step ships the workspace);
* classes pickled by value carry a "class tracker id" that cloudpickle draws from
  ``uuid4``; we assign one derived from the class's module and qualified name instead.

Set iteration order depends on ``PYTHONHASHSEED``; the CLI and the build entrypoint run
with a fixed seed (see ``stepflow.compiler.hashseed``).
"""

from __future__ import annotations

import hashlib
import site
import sys
import sysconfig
import types
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache, lru_cache
from pathlib import Path
from types import ModuleType

import cloudpickle
from cloudpickle import cloudpickle as _cp

from stepflow.workflow.callsite import display_path

_STEPFLOW_ROOT = Path(__file__).resolve().parent.parent


@lru_cache(maxsize=1)
def _installed_roots() -> tuple[Path, ...]:
    roots = {Path(p).resolve() for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        roots.add(Path(sysconfig.get_paths()[key]).resolve())
    for p in site.getsitepackages() + [site.getusersitepackages()]:
        roots.add(Path(p).resolve())
    roots.add(_STEPFLOW_ROOT)
    return tuple(roots)


def _is_within(path: Path, roots: tuple[Path, ...] | list[Path]) -> bool:
    return any(path == r or r in path.parents for r in roots)


@cache
def _in_project(filename: str, project_root: Path) -> bool:
    path = Path(filename).resolve()
    return _is_within(path, [project_root]) and not _is_within(path, _installed_roots())


def project_modules(project_root: Path) -> list[ModuleType]:
    """Imported modules whose source is in the project (and not an installed package)."""
    return [m for m in list(sys.modules.values())
            if getattr(m, "__file__", None) and _in_project(m.__file__, project_root)]


@contextmanager
def prepared(project_root: Path) -> Iterator[None]:
    """Within: project modules (and ``__main__``) pickle by value, with stable class ids.

    cloudpickle copies a by-value function's module ``__file__`` into the pickle; while
    pickling it is the project-relative path, so the checkout's location does not leak
    into the bytes. It is restored on exit.
    """
    modules = project_modules(project_root)
    main = sys.modules.get("__main__")
    if main is not None and main not in modules:
        modules.append(main)
    saved_files: dict[ModuleType, str] = {}
    for module in modules:
        if module.__name__ not in cloudpickle.list_registry_pickle_by_value():
            try:
                cloudpickle.register_pickle_by_value(module)
            except ValueError:  # not importable by name (e.g. an interactive __main__)
                pass
        for value in list(vars(module).values()):
            if isinstance(value, type) and value.__module__ == module.__name__:
                _stable_tracker_id(value)
        filename = getattr(module, "__file__", None)
        if filename:
            saved_files[module] = filename
            module.__file__ = display_path(filename)
    table = _cp.Pickler._dispatch_table
    table[types.CodeType] = _code_reduce_with_path
    try:
        yield
    finally:
        table[types.CodeType] = _cp._code_reduce
        for module, filename in saved_files.items():
            module.__file__ = filename


def _code_reduce_with_path(code: types.CodeType) -> tuple[object, tuple[object, ...]]:
    """cloudpickle's code reduction, with the project-relative file name kept for project
    code (anything else keeps ``<dynamic-code>``: an absolute path would leak the machine)."""
    constructor, args = _cp._code_reduce(code)
    path = display_path(code.co_filename)
    if path.startswith(("/", "<")) or Path(path).is_absolute():
        return constructor, args
    return constructor, tuple(path if isinstance(a, str) and a == "<dynamic-code>" else a for a in args)


def _stable_tracker_id(cls: type) -> None:
    tracker_id = hashlib.sha256(
        f"{cls.__module__}:{cls.__qualname__}".encode()).hexdigest()[:32]
    with _cp._DYNAMIC_CLASS_TRACKER_LOCK:
        if cls not in _cp._DYNAMIC_CLASS_TRACKER_BY_CLASS:
            _cp._DYNAMIC_CLASS_TRACKER_BY_CLASS[cls] = tracker_id
            _cp._DYNAMIC_CLASS_TRACKER_BY_ID[tracker_id] = cls
