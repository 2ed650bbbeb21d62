"""The sandbox build entrypoint: ``python -m stepflow.compiler.build``.

    --module PATH_OR_DOTTED [--attr NAME] --workdir DIR --s3-root-uri URI
    --out BUNDLE_DIR [--previous-index FILE]

Imports the user's module from DIR, compiles, writes the bundle and
``BUNDLE_DIR/result.json``: ``{"ok": true, ...}`` or ``{"ok": false, "reason", "message",
"kind", "file", "line"}``. Exit code 0 on success, 2 on a user error (the error's ``kind``),
3 on anything else (an infrastructure error, or a bug in stepflow).

The build compiles through ``Pipeline.compile`` like any user of the API, so the
pipeline's session decides the region, the @step defaults and the integrity key (by
default the configuration's, e.g. ``STEPFLOW_INTEGRITY_KEY``); the store root and what is
already published come from the command line, never from a store.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from stepflow.compiler.hashseed import ensure_fixed_hash_seed
from stepflow.errors import INFRASTRUCTURE, USER, ConfigurationError, StepflowError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m stepflow.compiler.build")
    p.add_argument("--module", required=True, help="file path or dotted module, [:ATTR] allowed")
    p.add_argument("--attr", help="attribute holding the Pipeline (when several)")
    p.add_argument("--workdir", required=True, help="the project root (checkout)")
    p.add_argument("--s3-root-uri", required=True)
    p.add_argument("--out", required=True, help="bundle folder to write")
    p.add_argument("--previous-index", help="JSON of published key -> sha256")
    return p


def read_previous_index(path: str | None) -> dict[str, str] | None:
    """A publish index file (``{"objects": {...}}``) or a plain key → sha256 map."""
    if not path:
        return None
    try:
        data = json.loads(Path(path).read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigurationError(f"--previous-index {path}: {exc}") from None
    objects = data.get("objects", data) if isinstance(data, dict) else None
    if not isinstance(objects, dict):
        raise ConfigurationError(f"--previous-index {path}: expected a JSON object")
    return objects


def build(args: argparse.Namespace) -> dict[str, Any]:
    from stepflow.compiler.loader import load_pipeline

    workdir = Path(args.workdir).resolve()
    os.chdir(workdir)
    previous = read_previous_index(args.previous_index)
    pipeline = load_pipeline(args.module, attr=args.attr, workdir=workdir)
    bundle = pipeline.compile(args.out, s3_root_uri=args.s3_root_uri,
                              previous_index=previous or {})
    return {"ok": True, "pipeline_name": bundle.pipeline_name, "digest": bundle.digest,
            "step_count": bundle.step_count, "files": len(bundle.files),
            "bytes": sum(f.size for f in bundle.files)}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ensure_fixed_hash_seed(["-m", "stepflow.compiler.build", *argv])
    args = _parser().parse_args(argv)
    out = Path(args.out).resolve()
    args.out = str(out)
    out.mkdir(parents=True, exist_ok=True)
    try:
        result, code = build(args), 0
    except StepflowError as exc:
        loc = exc.location
        result = {"ok": False, "reason": exc.reason, "message": exc.message, "kind": exc.kind,
                  "file": loc.file if loc else None, "line": loc.line if loc else None}
        code = 2 if exc.kind == USER else 3
    except Exception as exc:  # a bug in stepflow, not in the user's code
        result = {"ok": False, "reason": "InternalError", "kind": INFRASTRUCTURE,
                  "message": f"{type(exc).__name__}: {exc}", "file": None, "line": None,
                  "traceback": traceback.format_exc()}
        code = 3
    (out / "result.json").write_text(json.dumps(result, indent=1) + "\n", "utf-8")
    if not result["ok"]:
        print(f"{result['reason']}: {result['message']}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
