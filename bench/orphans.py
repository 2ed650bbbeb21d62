"""Operator SIGKILLed mid-build → every process of the build gone: how long, per mode.

Each round starts an "operator" process that runs one sandboxed build (the test suite's
daemonizing script: a double-forked ``setsid`` daemon and a plain child, all sleeping),
waits until all its processes exist, SIGKILLs the operator and polls ``/proc`` every 5 ms
until no process carrying the build's token is left (the scenario of
``tests/gitops/test_sandbox_confinement.py``).

    .venv/bin/python bench/orphans.py                # 10 rounds per mode
    .venv/bin/python bench/orphans.py --rounds 20 --json out.json

Needs root (the build runs as uid 65534) and an interpreter that uid can execute
(``/usr/bin/python3.X`` of this version, or ``--python``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--python", default=f"/usr/bin/python{sys.version_info.major}."
                                            f"{sys.version_info.minor}")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    from tests.gitops.test_sandbox_confinement import kill_operator_mid_build

    from stepflow import confine

    modes = [confine.REAPER]
    problem = confine.probe(args.python)
    if problem is None:
        modes.insert(0, confine.NAMESPACES)
    else:
        print(f"namespaces unavailable: {problem}", file=sys.stderr)
    results: dict[str, list[float]] = {}
    for mode in modes:
        for _ in range(args.rounds):
            root = Path(tempfile.mkdtemp(prefix="stepflow-bench-orphans-", dir="/var/tmp"))
            try:
                os.chmod(root, 0o711)
                (root / "checkout").mkdir()
                seconds, _ = kill_operator_mid_build(root, root / "checkout", args.python, mode)
            finally:
                shutil.rmtree(root, ignore_errors=True)
            results.setdefault(mode, []).append(seconds)
        times = sorted(results[mode])
        print(f"{mode:>10}: operator SIGKILL -> no build process left: median "
              f"{statistics.median(times) * 1000:.0f} ms, max {times[-1] * 1000:.0f} ms "
              f"({len(times)} rounds)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
