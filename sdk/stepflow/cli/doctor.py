"""``stepflow doctor``: is this machine ready, and if not, what to do (as ``flux check``).

Each check is a function returning a :class:`Check`: what it looked at, ok / warn / fail /
skip, and a detail that says how to fix a failure. The store is checked by writing,
reading and deleting one small object, because a listable bucket can still refuse writes.
"""

from __future__ import annotations

import json
import platform
import secrets
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass

import click

from stepflow.cli.common import DATA_FORMATS, console, dump, output_option, print_table, store_option
from stepflow.errors import StepflowError

OK, WARN, FAIL, SKIP = "ok", "warn", "fail", "skip"
_STYLES = {OK: "green", WARN: "yellow", FAIL: "bold red", SKIP: "dim"}
#: The CRDs the operator needs, and the label its chart gives the Deployment.
CRDS = ("pipelines.stepflow.dev", "pipelineexecutions.stepflow.dev")
OPERATOR_SELECTOR = "app.kubernetes.io/part-of=stepflow,app.kubernetes.io/component=operator"


@dataclass(frozen=True)
class Check:
    name: str
    status: str
    detail: str


def check_python() -> Check:
    from importlib.metadata import version

    return Check("python", OK, f"Python {platform.python_version()} ({sys.executable}), stepflow {version('stepflow')}")


def check_config() -> Check:
    from stepflow.config import load_config

    try:
        config = load_config()
    except StepflowError as exc:
        return Check("configuration", FAIL, exc.message)
    files = ", ".join(str(f) for f in config.files) or "no configuration file"
    return Check("configuration", OK, f"store {config.s3_root_uri} (from {config.origins.get('s3_root_uri')}); {files}")


def check_store() -> Check:
    from stepflow.config import load_config
    from stepflow.storage import NotFound, open_store

    try:
        config = load_config()
        store = open_store(config.s3_root_uri, config.s3_endpoint_url)
        key = f".stepflow-doctor/{secrets.token_hex(8)}"
        store.put_bytes(key, b"stepflow doctor")
        if store.get_bytes(key) != b"stepflow doctor":
            return Check("store", FAIL, f"{store.uri(key)} read back different bytes")
        store.delete(key)
        try:
            store.get_bytes(key)
            return Check("store", WARN, f"{store.uri(key)} is still readable after delete")
        except NotFound:
            pass
    except StepflowError as exc:
        return Check("store", FAIL, f"{exc.message}")
    return Check("store", OK, f"{config.s3_root_uri}: write, read and delete work")


def check_credentials() -> Check:
    from stepflow.config import load_config

    try:
        config = load_config()
    except StepflowError:
        return Check("credentials", SKIP, "no valid configuration")
    if not config.s3_root_uri.startswith("s3://"):
        return Check("credentials", SKIP, "the store is a folder (file://): no credentials needed")
    import boto3

    credentials = boto3.Session().get_credentials()
    if credentials is None:
        return Check("credentials", FAIL, "no AWS credentials found: set AWS_ACCESS_KEY_ID and "
                                          "AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or run `aws configure`")
    endpoint = config.s3_endpoint_url or "AWS"
    return Check("credentials", OK, f"AWS credentials from {credentials.method}; endpoint {endpoint}")


def check_integrity_key() -> Check:
    from stepflow.config import load_config

    try:
        config = load_config()
    except StepflowError:
        return Check("integrity key", SKIP, "no valid configuration")
    if config.integrity_key is None:
        return Check("integrity key", WARN, "none: artifacts are checked with plain SHA-256, which anyone who can "
                                            "write to the store can forge; set STEPFLOW_INTEGRITY_KEY_FILE "
                                            "(docs/CONFIGURATION.md)")
    return Check("integrity key", OK, f"set (from {config.origins.get('integrity_key', 'configuration')})")


def check_tool(name: str, purpose: str, install: str) -> Callable[[], Check]:
    def check() -> Check:
        path = shutil.which(name)
        if path is None:
            return Check(name, WARN, f"not installed: needed {purpose} ({install})")
        return Check(name, OK, path)

    return check


def _kubectl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["kubectl", *args], capture_output=True, text=True, timeout=20)


def check_cluster() -> Check:
    if shutil.which("kubectl") is None:
        return Check("cluster", SKIP, "kubectl is not installed: the operator checks need it "
                                      "(stepflow run and stepflow up need no cluster)")
    try:
        proc = _kubectl("version", "-o", "json")
    except subprocess.TimeoutExpired:
        return Check("cluster", FAIL, "kubectl version did not answer in 20 s")
    if proc.returncode != 0:
        first = (proc.stderr.strip().splitlines() or ["no answer"])[-1]
        return Check("cluster", SKIP, f"no cluster reachable with the current kubeconfig ({first})")
    server = (json.loads(proc.stdout).get("serverVersion") or {}).get("gitVersion", "?")
    return Check("cluster", OK, f"Kubernetes {server}")


def check_operator() -> Check:
    if shutil.which("kubectl") is None:
        return Check("operator", SKIP, "kubectl is not installed")
    try:
        crds = _kubectl("get", "crd", *CRDS, "-o", "name")
        if crds.returncode != 0:
            if "NotFound" in crds.stderr:
                return Check("operator", FAIL, "the stepflow CRDs are not installed: "
                                               "helm install stepflow charts/stepflow")
            return Check("operator", SKIP, "no cluster reachable")
        deployments = _kubectl("get", "deployments", "--all-namespaces", "-l", OPERATOR_SELECTOR, "-o", "json")
    except subprocess.TimeoutExpired:
        return Check("operator", FAIL, "kubectl did not answer in 20 s")
    items = json.loads(deployments.stdout or "{}").get("items", []) if deployments.returncode == 0 else []
    if not items:
        return Check("operator", FAIL, "CRDs installed but no operator Deployment found: "
                                       "helm install stepflow charts/stepflow")
    states = []
    for item in items:
        ready = (item.get("status") or {}).get("readyReplicas") or 0
        wanted = (item.get("spec") or {}).get("replicas", 1)
        meta = item["metadata"]
        states.append((f"{meta['namespace']}/{meta['name']} {ready}/{wanted} ready", ready >= wanted > 0))
    status = OK if all(ok for _, ok in states) else FAIL
    return Check("operator", status, "; ".join(text for text, _ in states))


CHECKS: list[Callable[[], Check]] = [
    check_python, check_config, check_store, check_credentials, check_integrity_key,
    check_tool("git", "by `stepflow up` to fetch sources", "Debian/Ubuntu: apt-get install git"),
    check_tool("dot", "by `stepflow graph` for svg and png", "Debian/Ubuntu: apt-get install graphviz; "
                                                             "macOS: brew install graphviz"),
    check_cluster, check_operator,
]


@click.command("doctor")
@output_option()
@store_option
def doctor_command(output: str) -> None:
    """Check this machine: configuration, store access, credentials, tools, cluster and operator.

    Exit code: 0 when nothing failed (warnings allowed), 1 otherwise.

    \b
    Examples:
      stepflow doctor
      stepflow doctor --store s3://my-bucket/stepflow
      stepflow doctor -o json
    """
    checks = [check() for check in CHECKS]
    if output in DATA_FORMATS:
        click.echo(dump([asdict(c) for c in checks], output), nl=False)
    else:
        from rich.table import Table
        from rich.text import Text

        table = Table(box=None, pad_edge=False, header_style="bold")
        table.add_column("CHECK", no_wrap=True)
        table.add_column("STATUS", no_wrap=True)
        table.add_column("DETAIL", overflow="fold")
        for c in checks:
            table.add_row(c.name, Text(c.status, style=_STYLES[c.status]), Text(c.detail))
        print_table(console(), table)
    raise SystemExit(1 if any(c.status == FAIL for c in checks) else 0)


COMMANDS = [doctor_command]
