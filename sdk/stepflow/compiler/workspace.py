"""``workspace.zip``: the project's Python files, for steps that include the local workdir.

Same layout as the SDK's (root folder ``sagemaker_remote_function_workspace/``, by
default ``*.py`` files only) but byte-stable: sorted entries, fixed timestamps and
permissions, so an unchanged project zips to the same bytes. Hidden folders, virtual
environments and ``__pycache__`` are never included.
"""

from __future__ import annotations

import fnmatch
import io
import os
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from stepflow import layout

_EPOCH = (1980, 1, 1, 0, 0, 0)


def _ignore_function(custom_file_filter: Any) -> Callable[[str, list[str]], set[str]] | None:
    """The filter as a ``shutil.copytree``-style ignore function (SDK semantics)."""
    if custom_file_filter is None:
        return None
    if callable(custom_file_filter):
        return lambda d, names: set(custom_file_filter(d, names))
    patterns = getattr(custom_file_filter, "ignore_name_patterns", None)
    if patterns is None and isinstance(custom_file_filter, dict):
        patterns = custom_file_filter.get("IgnoreNamePatterns")
    if patterns is None:
        patterns = list(custom_file_filter)
    return lambda d, names: {n for n in names if any(fnmatch.fnmatch(n, p) for p in patterns)}


def workspace_zip(project_root: Path, custom_file_filter: Any = None) -> bytes:
    ignore = _ignore_function(custom_file_filter)
    entries: list[tuple[str, Path]] = []
    for dirpath, dirnames, filenames in os.walk(project_root):
        here = Path(dirpath)
        ignored = ignore(dirpath, dirnames + filenames) if ignore else set()
        dirnames[:] = sorted(
            d for d in dirnames
            if d not in ignored and not d.startswith(".") and d != "__pycache__"
            and not (here / d / "pyvenv.cfg").exists())
        for name in sorted(filenames):
            if name in ignored or (ignore is None and not name.endswith(".py")):
                continue
            path = here / name
            relative = path.relative_to(project_root).as_posix()
            entries.append((f"{layout.WORKSPACE_ROOT}/{relative}", path))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
        for arcname, path in sorted(entries):
            info = zipfile.ZipInfo(arcname, date_time=_EPOCH)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, path.read_bytes())
    return buffer.getvalue()
