"""``python -m stepflow.backends.local``: the detached orchestrator of one execution."""

from __future__ import annotations

import sys

from stepflow.backends.local import LocalBackend
from stepflow.backends.local.detached import main

if __name__ == "__main__":
    sys.exit(main("python -m stepflow.backends.local",
                  lambda store, run_dir, key: LocalBackend(store, run_dir=run_dir, integrity_key=key)))
