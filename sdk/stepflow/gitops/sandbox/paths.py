"""Which paths a build may use: its module, its requirements, and what it leaves behind.

The module and requirements paths come from the resource (user input) and are checked
before anything runs; the bundle is checked after the build, because the user's code wrote
it and a symlink in it could point the publisher at a secret.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path

_DOTTED = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


def check_module_path(checkout: Path, module: str) -> str | None:
    """Why ``module`` is not a module inside the checkout, or None when it is fine.

    A path (``pipelines/churn.py``) must be relative, without ``..``, and must not resolve
    through a symlink to outside the checkout; a dotted name (``pipelines.churn``) must be
    identifiers, and its files, when present, must stay inside too.
    """
    hint = ("set spec.module to a path relative to the repository root, like "
            "'pipelines/churn.py', or a dotted module name, like 'pipelines.churn'")
    if not module or "\0" in module or "\\" in module:
        return f"spec.module {module!r} is not a module path; {hint}"
    if "/" in module or module.endswith(".py"):
        if module.startswith("/"):
            return f"spec.module {module!r} is absolute; {hint}"
        if ".." in module.split("/"):
            return f"spec.module {module!r} leaves the repository through '..'; {hint}"
        candidates = [module]
    elif _DOTTED.match(module):
        base = module.replace(".", "/")
        parts = base.split("/")
        candidates = ["/".join(parts[:i]) for i in range(1, len(parts))]
        candidates += [f"{base}.py", f"{base}/__init__.py", base]
    else:
        return f"spec.module {module!r} is neither a file path nor a dotted module name; {hint}"
    root = os.path.realpath(checkout)
    for candidate in candidates:
        target = os.path.realpath(os.path.join(root, candidate))
        if os.path.lexists(os.path.join(root, candidate)) and \
                os.path.commonpath([root, target]) != root:
            return (f"spec.module {module!r} resolves through a symlink to outside the "
                    f"repository ({candidate} -> {target}); {hint}")
    return None


def requirements_file(checkout: Path, name: str | None) -> tuple[Path | None, str | None]:
    """``(the requirements file, None)``, ``(None, None)`` when there is none, or ``(None, why)``.

    ``name`` None means ``requirements.txt`` when the repository has one.
    """
    if name is None:
        default = checkout / "requirements.txt"
        if not default.is_file():
            return None, None
        name = "requirements.txt"
    if name.startswith("/") or ".." in name.split("/"):
        return None, (f"spec.build.requirements {name!r} must be a path inside the repository, "
                      "like 'requirements.txt'")
    path = checkout / name
    resolved = path.resolve()
    if not resolved.is_relative_to(checkout):
        return None, (f"spec.build.requirements {name!r} resolves through a symlink to outside "
                      "the repository; point it at a file in the repository")
    if not resolved.is_file():
        return None, (f"spec.build.requirements names {name!r}, which is not a file in the "
                      "repository at this commit; commit it or fix the path")
    return resolved, None


def check_bundle(out: Path) -> str | None:
    """Only plain files and folders may be published: a symlink could point at a secret."""
    for path in walk(out):
        mode = os.lstat(path).st_mode
        if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
            return (f"the build wrote {path.relative_to(out)}, which is not a regular file "
                    "(symlinks and special files are never published); remove whatever "
                    "creates it at import time")
    return None


def walk(root: Path) -> Iterator[Path]:
    """``root`` and everything under it, never following a symlink."""
    yield root
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in dirnames + filenames:
            yield Path(dirpath, name)
