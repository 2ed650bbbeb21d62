"""``python -m stepflow.backends.kubernetes``: the detached orchestrator of one execution
whose attempts are Jobs (its target comes in ``STEPFLOW_KUBERNETES_TARGET``)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from stepflow.backends.kubernetes import TARGET_ENV, KubernetesBackend, KubernetesTarget
from stepflow.storage import open_store


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stepflow.backends.kubernetes")
    parser.add_argument("--root", required=True, help="the store root URI")
    parser.add_argument("--pipeline", required=True)
    parser.add_argument("--execution", required=True)
    parser.add_argument("--run-dir", type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    target = KubernetesTarget.from_json(os.environ[TARGET_ENV])
    backend = KubernetesBackend(open_store(args.root), target, run_dir=args.run_dir)
    state = backend.run(args.pipeline, args.execution)
    print(f"execution {args.execution}: {state.status}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
