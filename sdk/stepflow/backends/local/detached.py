"""The detached orchestrator of one execution: what ``python -m stepflow.backends.<name>``
runs, for every backend whose orchestrator runs here (local processes, Kubernetes Jobs).

Started by ``LocalBackend._spawn`` in its own session, so it outlives the process that
started the execution; the integrity key arrives on a pipe (``runtime.key``).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from stepflow.runtime.key import read_key
from stepflow.storage import ObjectStore, open_store

if TYPE_CHECKING:
    from stepflow.backends.local import LocalBackend

#: ``(store, run_dir, integrity_key)`` → the backend that orchestrates.
MakeBackend = Callable[[ObjectStore, "Path | None", "bytes | None"], "LocalBackend"]


def main(prog: str, make_backend: MakeBackend, argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=prog)
    parser.add_argument("--root", required=True, help="the store root URI")
    parser.add_argument("--pipeline", required=True)
    parser.add_argument("--execution", required=True)
    parser.add_argument("--run-dir", type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    key = read_key()  # from the pipe its starter passed, closed before anything else runs
    backend = make_backend(open_store(args.root), args.run_dir, key)
    state = backend.run(args.pipeline, args.execution)
    print(f"execution {args.execution}: {state.status}", file=sys.stderr)
    return 0
