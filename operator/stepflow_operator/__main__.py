"""``python -m stepflow_operator`` (also the ``stepflow-operator`` command): ``kopf run`` with
this operator's handlers and defaults.

Without ``--namespace`` it watches the namespaces in ``$STEPFLOW_WATCH_NAMESPACES``
(comma-separated), or every namespace (kopf's patterns, ``ml-*``, work too). Without
``--leader-elect`` it is the one active operator; with it, several replicas share a Lease
(:mod:`.leader`) and only its holder runs kopf, the others stand by (the chart's
``leaderElection``). ``/metrics``, ``/healthz`` and ``/readyz`` are served from the start
(:mod:`.monitoring`), standing by or not.

Before kopf starts, :func:`preflight` checks what would otherwise fail later and be
retried forever (a missing extra, no cluster credentials, a bad setting): the operator
then exits 2 with one line saying what to do.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import signal
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from stepflow_operator.leader import LeaderElector

#: What the ``operator`` extra brings (pyproject.toml) that the operator imports.
OPERATOR_MODULES = ("kopf", "kubernetes", "aiohttp", "prometheus_client")


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="stepflow-operator",
                                     description="Run the stepflow operator (kopf) against the current cluster.")
    parser.add_argument("-n", "--namespace", action="append", default=[],
                        help="watch this namespace (repeatable; a glob like 'ml-*' works)")
    parser.add_argument("-A", "--all-namespaces", action="store_true", help="watch every namespace")
    parser.add_argument("--standalone", action="store_true",
                        help="accepted for compatibility: without --leader-elect the operator is always standalone")
    election = parser.add_argument_group("leader election (several replicas, one active)")
    election.add_argument("--leader-elect", action="store_true",
                          help="run kopf only while holding a coordination.k8s.io Lease; stand by otherwise")
    election.add_argument("--leader-election-namespace", metavar="NS",
                          help="the Lease's namespace (default: $POD_NAMESPACE, else the service account's)")
    election.add_argument("--leader-election-id", metavar="NAME", default="stepflow-operator",
                          help="the Lease's name (default: %(default)s)")
    election.add_argument("--lease-duration", type=float, default=15.0, metavar="S",
                          help="a standby takes over after S seconds without renewal (default: %(default)s)")
    election.add_argument("--renew-deadline", type=float, default=10.0, metavar="S",
                          help="the leader exits when it could not renew for S seconds (default: %(default)s)")
    election.add_argument("--retry-period", type=float, default=2.0, metavar="S",
                          help="renew, or try to acquire, every S seconds (default: %(default)s)")
    parser.add_argument("--liveness", metavar="URL", help="kopf's liveness probe, e.g. http://0.0.0.0:8080/healthz")
    parser.add_argument("--log-format", choices=("plain", "full", "json"), help="kopf's log format")
    level = parser.add_mutually_exclusive_group()
    level.add_argument("--verbose", action="store_true")
    level.add_argument("--debug", action="store_true")
    level.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    if args.all_namespaces and args.namespace:
        parser.error("--all-namespaces and --namespace exclude each other")
    return args


def watched_namespaces(args: argparse.Namespace) -> list[str]:
    """The namespaces (names or kopf patterns) to watch; empty for every namespace."""
    from stepflow_operator.settings import WATCH_NAMESPACES_ENV, split_namespaces

    if args.all_namespaces:
        return []
    return args.namespace or split_namespaces(os.environ.get(WATCH_NAMESPACES_ENV, ""))


def kopf_arguments(args: argparse.Namespace) -> list[str]:
    """The ``kopf run`` command line these options stand for."""
    command = ["run", "--module=stepflow_operator.handlers", "--standalone"]
    namespaces = watched_namespaces(args)
    if namespaces:
        command += [f"--namespace={n}" for n in namespaces]
    else:
        command.append("--all-namespaces")
    if args.liveness:
        command.append(f"--liveness={args.liveness}")
    if args.log_format:
        command.append(f"--log-format={args.log_format}")
    for flag in ("verbose", "debug", "quiet"):
        if getattr(args, flag):
            command.append(f"--{flag}")
    return command


def preflight() -> str | None:
    """Why the operator cannot start, in one line; None when it can."""
    missing = [m for m in OPERATOR_MODULES if importlib.util.find_spec(m) is None]
    if missing:
        return (f"the operator extra is not installed (no module {', '.join(missing)}); "
                "install it with: pip install 'stepflow[operator]'")
    from kubernetes import client, config

    try:
        config.load_incluster_config(client_configuration=client.Configuration())
    except config.ConfigException:
        kubeconfig = os.environ.get("KUBECONFIG") or "~/.kube/config"
        try:
            config.load_kube_config(client_configuration=client.Configuration(), persist_config=False)
        except (config.ConfigException, OSError) as exc:
            detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            return (f"no Kubernetes credentials: not in a pod (no service account) and no usable kubeconfig "
                    f"at {kubeconfig} ({detail}); set KUBECONFIG or run in-cluster")

    from stepflow.errors import ConfigurationError
    from stepflow_operator.settings import OperatorConfig

    try:
        OperatorConfig.from_env()
    except ConfigurationError as exc:
        return str(exc)
    return None


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)  # --help and usage errors first
    problem = preflight()
    if problem is not None:
        print(f"stepflow-operator: cannot start: {problem}", file=sys.stderr)
        raise SystemExit(2)
    import kopf
    from kopf.cli import main as kopf_main

    from stepflow_operator import monitoring
    from stepflow_operator.settings import WATCH_NAMESPACES_ENV, OperatorConfig

    # kopf's own log set-up, now, so a standby logs as the active replica will (kopf run
    # replaces this handler with an identical one).
    kopf.configure(debug=args.debug, verbose=args.verbose, quiet=args.quiet,
                   log_format=kopf.LogFormat[(args.log_format or "full").upper()])
    config = OperatorConfig.from_env()
    if config.metrics_address:  # alive and scraped while standing by
        monitoring.serve(config.metrics_address)
    # Until kopf installs its own handlers, SIGTERM ends the process through the `finally`
    # below (Python's default would skip it and leave the Lease held until it expires).
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    # A warm standby: the handlers and everything they import are loaded before the wait,
    # so taking over costs kopf's start-up only (kopf run --module finds them loaded).
    importlib.import_module("stepflow_operator.handlers")
    # The handlers' start-up reads what is watched from here (kopf does not tell it).
    os.environ[WATCH_NAMESPACES_ENV] = ",".join(watched_namespaces(args))
    elector = _elect(args) if args.leader_elect else None
    try:
        kopf_main(args=kopf_arguments(args), prog_name="stepflow-operator")
    finally:
        if elector is not None:
            elector.release()


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def _elect(args: argparse.Namespace) -> LeaderElector:
    """Block until this replica leads, then keep the Lease; exit at once if it is lost."""
    from stepflow_operator.kube import api_client
    from stepflow_operator.leader import LeaderElector, Timing, default_identity, default_namespace

    try:
        timing = Timing(args.lease_duration, args.renew_deadline, args.retry_period)
    except ValueError as exc:
        print(f"stepflow-operator: cannot start: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    elector = LeaderElector(api_client(2), args.leader_election_namespace or default_namespace(),
                            args.leader_election_id, default_identity(), timing)
    elector.acquire()

    def lost() -> None:
        logging.getLogger(__name__).error("lost the leader Lease: exiting now so that one replica only is active")
        logging.shutdown()
        os._exit(3)

    elector.keep(lost)
    return elector


if __name__ == "__main__":
    main(sys.argv[1:])
