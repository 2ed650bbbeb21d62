"""Run the compiling process with a fixed hash seed.

Pickled sets and frozensets of strings list their items in hash order, which changes
with every interpreter start unless ``PYTHONHASHSEED`` is fixed; the seed cannot be
changed once Python runs, so the entrypoints re-execute themselves when it is not set.
"""

from __future__ import annotations

import os
import sys

SEED = "0"


def ensure_fixed_hash_seed(argv: list[str]) -> None:
    """Re-exec ``python argv...`` with PYTHONHASHSEED fixed, unless it already is."""
    if os.environ.get("PYTHONHASHSEED") == SEED:
        return
    env = dict(os.environ, PYTHONHASHSEED=SEED)
    os.execve(sys.executable, [sys.executable, *argv], env)
