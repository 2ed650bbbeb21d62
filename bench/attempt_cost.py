"""One step attempt's wall time: ``python -m stepflow.runtime`` on a trivial step, per mode.

Publishes a step returning ``1`` to a ``file://`` store, then runs one attempt of it
``--rounds`` times per mode and reports the median and the fastest:

* ``same-user``: ``STEPFLOW_STEP_UID=none``, ``reaper`` (what ``stepflow run`` gets on a
  laptop: the user part is one more interpreter, confined);
* ``reaper``, ``namespaces`` (root only): the user part as uid 65534, confined each way.

``--baseline SDK_DIR`` also times another checkout's runtime (e.g. ``/work/main/sdk``, the
single-process runtime) for comparison. Needs ``--step-python`` executable by 65534 when
root (e.g. ``/usr/bin/python3.11``).

    .venv/bin/python bench/attempt_cost.py --rounds 10 --step-python /usr/bin/python3.11 \\
        --baseline /work/main/sdk
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TS = "2026-01-01-00-00-00-000"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--step-python", default=sys.executable)
    parser.add_argument("--baseline", type=Path, help="another checkout's sdk/ to time too")
    args = parser.parse_args()
    from stepflow.serialization import serialize
    from stepflow.storage import open_store

    base_dir = REPO / ".cache" / "bench-attempt"
    base_dir.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(dir=base_dir))
    folder.chmod(0o711)
    try:
        base = f"file://{folder / 'store'}/demo"
        store = open_store(base)
        for name, obj in (("function", lambda: 1), ("arguments", ((), {}))):
            artifact = serialize(obj)
            store.put_bytes(f"s/{TS}/{name}/payload.pkl", artifact.payload)
            store.put_bytes(f"s/{TS}/{name}/metadata.json", artifact.metadata)
        env = {k: v for k, v in os.environ.items() if not k.startswith("STEPFLOW_")}
        env.update(STEPFLOW_CACHE_DIR=str(folder / "cache"), STEPFLOW_STEP_PYTHON=args.step_python)
        modes = {"same-user": {"STEPFLOW_STEP_UID": "none", "STEPFLOW_STEP_CONFINEMENT": "reaper"}}
        if os.geteuid() == 0:
            modes["reaper"] = {"STEPFLOW_STEP_CONFINEMENT": "reaper"}
            modes["namespaces"] = {"STEPFLOW_STEP_CONFINEMENT": "namespaces"}
        if args.baseline:
            modes[f"baseline {args.baseline}"] = {"PYTHONPATH": str(args.baseline)}
        for mode, extra in modes.items():
            times = []
            for n in range(args.rounds):
                started = time.monotonic()
                proc = subprocess.run(
                    [sys.executable, "-m", "stepflow.runtime", "--s3_base_uri", base,
                     "--pipeline_step_name", "s", "--pipeline_execution_id", f"e{mode}{n}".replace(" ", ""),
                     "--func_step_s3_dir", TS], env={**env, **extra}, capture_output=True, text=True)
                times.append(time.monotonic() - started)
                if proc.returncode != 0:
                    print(f"{mode}: failed: {proc.stderr[-500:]}", file=sys.stderr)
                    break
            print(f"{mode:>40}: median {statistics.median(times) * 1000:.0f} ms, "
                  f"fastest {min(times) * 1000:.0f} ms ({len(times)} attempts)")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
