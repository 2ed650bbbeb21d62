"""Where stepflow keeps what it can rebuild: venvs, run folders, git and build caches."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """``$STEPFLOW_CACHE_DIR``, else ``~/.cache/stepflow``; never inside a checkout."""
    return Path(os.environ.get("STEPFLOW_CACHE_DIR") or Path.home() / ".cache" / "stepflow")
