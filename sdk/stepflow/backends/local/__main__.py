"""``python -m stepflow.backends.local``: the detached orchestrator of one execution."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from stepflow.backends.local import LocalBackend
from stepflow.runtime.key import read_key
from stepflow.storage import open_store


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stepflow.backends.local")
    parser.add_argument("--root", required=True, help="the store root URI")
    parser.add_argument("--pipeline", required=True)
    parser.add_argument("--execution", required=True)
    parser.add_argument("--run-dir", type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    key = read_key()  # from the pipe its starter passed, closed before anything else runs
    backend = LocalBackend(open_store(args.root), run_dir=args.run_dir, integrity_key=key)
    state = backend.run(args.pipeline, args.execution)
    print(f"execution {args.execution}: {state.status}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
