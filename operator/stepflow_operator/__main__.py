"""``python -m stepflow_operator`` (also the ``stepflow-operator`` command): ``kopf run`` with
this operator's handlers and defaults.

Without ``--namespace`` it watches the namespaces in ``$STEPFLOW_WATCH_NAMESPACES``
(comma-separated), or every namespace. Without ``--peering`` it runs standalone: one active
operator, as the chart deploys it.
"""

from __future__ import annotations

import argparse
import os
import sys


def kopf_arguments(argv: list[str] | None = None) -> list[str]:
    """The ``kopf run`` command line these options stand for."""
    parser = argparse.ArgumentParser(prog="stepflow-operator",
                                     description="Run the stepflow operator (kopf) against the current cluster.")
    parser.add_argument("-n", "--namespace", action="append", default=[],
                        help="watch this namespace (repeatable; a glob like 'ml-*' works)")
    parser.add_argument("-A", "--all-namespaces", action="store_true", help="watch every namespace")
    parser.add_argument("--standalone", action="store_true",
                        help="no peering: this is the only operator (the default unless --peering)")
    parser.add_argument("--peering", metavar="NAME", help="take part in kopf peering NAME (active/standby)")
    parser.add_argument("--liveness", metavar="URL", help="serve a liveness probe, e.g. http://0.0.0.0:8080/healthz")
    level = parser.add_mutually_exclusive_group()
    level.add_argument("--verbose", action="store_true")
    level.add_argument("--debug", action="store_true")
    level.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    if args.standalone and args.peering:
        parser.error("--standalone and --peering exclude each other")

    command = ["run", "--module=stepflow_operator.handlers"]
    namespaces = args.namespace or [n.strip() for n in os.environ.get("STEPFLOW_WATCH_NAMESPACES", "").split(",")
                                    if n.strip()]
    if args.all_namespaces and args.namespace:
        parser.error("--all-namespaces and --namespace exclude each other")
    if namespaces and not args.all_namespaces:
        command += [f"--namespace={n}" for n in namespaces]
    else:
        command.append("--all-namespaces")
    command.append(f"--peering={args.peering}" if args.peering else "--standalone")
    if args.liveness:
        command.append(f"--liveness={args.liveness}")
    for flag in ("verbose", "debug", "quiet"):
        if getattr(args, flag):
            command.append(f"--{flag}")
    return command


def main(argv: list[str] | None = None) -> None:
    from kopf.cli import main as kopf_main

    kopf_main(args=kopf_arguments(argv), prog_name="stepflow-operator")


if __name__ == "__main__":
    main(sys.argv[1:])
