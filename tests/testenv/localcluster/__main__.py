"""``python3 -m tests.testenv.localcluster up|down|status`` (run by ``scripts/testenv cluster``).

up --images FILE   start (or reuse) the cluster, import the images of FILE (the JSON that
                   scripts/testenv-images/images.py build prints); print the kubeconfig path
down               stop it and undo every change to the host
status             what runs, whether it is healthy, and leftovers of a dead one (exit 1 if
                   not running)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from . import ClusterError, LocalCluster


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/testenv cluster", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["up", "down", "status"])
    parser.add_argument("--images", type=Path, help="image manifest (JSON) for `up`")
    args = parser.parse_args(argv)
    cluster = LocalCluster()
    t0 = time.monotonic()
    try:
        if args.command == "up":
            if args.images is None:
                parser.error("up needs --images")
            cluster.up(json.loads(args.images.read_text()))
            how = "started" if cluster.started_here else "already running; reused"
            print(f"testenv cluster: {how} in {time.monotonic() - t0:.1f}s "
                  f"(logs: {cluster.layout.logs})", file=sys.stderr)
            print(cluster.kubeconfig)
        elif args.command == "down":
            restored = cluster.down()
            print(f"testenv cluster: down in {time.monotonic() - t0:.1f}s"
                  + (f"; restored {', '.join(restored)}" if restored else ""), file=sys.stderr)
            left = cluster.status()["leftovers"]
            if left:
                print(f"testenv cluster: left behind: {', '.join(left)}", file=sys.stderr)
                return 1
        else:
            status = cluster.status()
            print(json.dumps(status, indent=2))
            return 0 if status["healthy"] else 1
    except ClusterError as exc:
        print(f"testenv cluster: error: {exc}", file=sys.stderr)
        return 1
    except FileNotFoundError as exc:
        # A host tool (iptables, ip, containerd...) is absent: the cluster was never installed
        # on this machine, which is an answer for `status`, not a traceback.
        print(f"testenv cluster: {exc.filename or exc} is not installed: "
              "run `scripts/testenv install cluster`", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
