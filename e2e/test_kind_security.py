"""What the chart and image promise about privilege, checked in a real cluster: the operator's
ServiceAccount gets what it needs in the watched namespace and no Secret elsewhere (by
impersonation and with a real token of that account), the container runs with exactly the
capabilities the build sandbox needs, and user code in a build sees none of its secrets.
"""

from __future__ import annotations

import secrets
import subprocess

import yaml
from tests.testenv.samples import probe_module

from e2e.cluster import Cluster, Release, run, wait_for

TOKEN = "/var/run/secrets/kubernetes.io/serviceaccount/token"
INTEGRITY_KEY = "/etc/stepflow/integrity/key"

# CAP_CHOWN, CAP_DAC_OVERRIDE, CAP_KILL, CAP_SETGID, CAP_SETUID: bits 0, 1, 5, 6, 7.
SANDBOX_CAPABILITIES = (1 << 0) | (1 << 1) | (1 << 5) | (1 << 6) | (1 << 7)



def can_i(cluster: Cluster, account: str, verb: str, resource: str, namespace: str) -> bool:
    proc = cluster.kubectl("auth", "can-i", verb, resource, "-n", namespace, f"--as={account}", check=False)
    answer = proc.stdout.strip()
    assert answer in ("yes", "no"), proc.stderr
    return answer == "yes"


def check_rbac(cluster: Cluster, release: Release, watched: str, elsewhere: list[str], tmp_path) -> None:
    """What the operator's ServiceAccount may do in ``watched`` and may not do anywhere."""
    account = f"system:serviceaccount:{release.namespace}:{release.service_account}"
    for verb, resource in [("watch", "pipelines.stepflow.dev"), ("patch", "pipelines.stepflow.dev/status"),
                           ("create", "pipelineexecutions.stepflow.dev"),
                           ("delete", "pipelineexecutions.stepflow.dev"),
                           ("patch", "pipelineexecutions.stepflow.dev/status"), ("create", "events"),
                           ("get", "secrets")]:
        assert can_i(cluster, account, verb, resource, watched), (verb, resource, watched)
    for verb, resource in [("list", "secrets"), ("watch", "secrets"), ("delete", "pipelines.stepflow.dev"),
                           ("create", "pods"), ("get", "configmaps")]:
        assert not can_i(cluster, account, verb, resource, watched), (verb, resource, watched)
    for namespace in elsewhere:
        for verb, resource in [("get", "secrets"), ("watch", "pipelines.stepflow.dev"),
                               ("create", "pipelineexecutions.stepflow.dev")]:
            assert not can_i(cluster, account, verb, resource, namespace), (verb, resource, namespace)

    # The same with the account's own credentials: a token the API server issues for it.
    token = cluster.kubectl("-n", release.namespace, "create", "token", release.service_account,
                            "--duration=10m").stdout.strip()
    config = yaml.safe_load(cluster.kubectl("config", "view", "--raw", "--minify").stdout)
    config["users"] = [{"name": "operator", "user": {"token": token}}]
    config["contexts"][0]["context"]["user"] = "operator"
    as_operator = tmp_path / "operator.kubeconfig"
    as_operator.write_text(yaml.safe_dump(config))
    as_operator.chmod(0o600)
    secret = f"probe-{secrets.token_hex(3)}"
    for namespace in [watched, *elsewhere]:
        cluster.kubectl("-n", namespace, "create", "secret", "generic", secret, "--from-literal=value=x")

    def get(namespace: str) -> subprocess.CompletedProcess:
        return run([cluster.tools.kubectl, "--kubeconfig", str(as_operator), "-n", namespace, "get", "secret",
                    secret, "-o", "name"], check=False, timeout=60)

    assert get(watched).stdout.strip() == f"secret/{secret}", get(watched).stderr
    for namespace in elsewhere:
        refused = get(namespace)
        assert refused.returncode != 0 and "forbidden" in refused.stderr.lower(), (namespace, refused.stderr)


def test_service_account_reads_secrets_in_the_watched_namespace_only(cluster, operator: Release, namespace,
                                                                     tmp_path):
    other = f"{namespace}-other"
    cluster.kubectl("create", "namespace", other)
    try:
        check_rbac(cluster, operator, namespace, [other, operator.namespace, "default"], tmp_path)
    finally:
        cluster.kubectl("delete", "namespace", other, "--wait=false", check=False)


def test_operator_container_has_only_the_sandbox_capabilities(operator: Release):
    status = dict(line.split(":\t", 1) for line in operator.exec("cat", "/proc/1/status").stdout.splitlines()
                  if ":\t" in line)
    assert status["Uid"].split()[:2] == ["0", "0"], status["Uid"]
    assert int(status["CapEff"], 16) == SANDBOX_CAPABILITIES, status["CapEff"]
    assert int(status["CapBnd"], 16) == SANDBOX_CAPABILITIES, status["CapBnd"]
    assert status["NoNewPrivs"].strip() == "1"
    # the root filesystem is read-only; the operator's files are readable by it alone
    assert operator.exec("touch", "/usr/local/probe", check=False).returncode != 0
    # The chart asks 0400 for the token; the kubelet writes a projected service-account token
    # 0600 to the containers' runAsUser (here 0) instead (first seen on real pods, see
    # e2e/realpods): owner-only either way, which is the point.
    mode, owner = operator.exec("stat", "-L", "-c", "%a %u", TOKEN).stdout.split()
    assert (mode in ("400", "600"), owner) == (True, "0"), (mode, owner)
    assert operator.exec("stat", "-L", "-c", "%a", INTEGRITY_KEY).stdout.strip() == "400"
    # ...and the build user can run the build interpreter but not read them
    as_builder = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--"]
    ran = operator.exec(*as_builder, "/usr/local/bin/python", "-s", "-P", "-c",
                        "import os, stepflow.compiler.build; print(os.getuid())")
    assert ran.stdout.strip() == "65534"
    assert operator.exec(*as_builder, "cat", TOKEN, check=False).returncode != 0


def test_user_code_in_a_build_sees_none_of_the_operators_secrets(cluster, operator: Release, namespace, repo):
    probe = repo("probe")
    name = f"probe-{secrets.token_hex(2)}"
    module = probe_module([TOKEN, INTEGRITY_KEY], [b"KUBERNETES_SERVICE_HOST", b"STEPFLOW_INTEGRITY_KEY_FILE"])
    commit = probe.commit({"pipelines/flow.py": module}, "probe")
    cluster.apply(namespace, {"apiVersion": "stepflow.dev/v1alpha1", "kind": "Pipeline", "metadata": {"name": name},
                              "spec": {"source": {"url": probe.url, "interval": "2s"}, "module": "pipelines/flow.py"}})

    def built() -> dict | None:
        status = cluster.get(namespace, "pipeline", name).get("status") or {}
        last = status.get("lastBuild") or {}
        return status if last.get("revision") == f"main@sha1:{commit}" and last.get("finishedAt") else None

    status = wait_for(built, 300, f"the probe build of {commit[:7]}")
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "ModuleError"), ready
    message = status["lastBuild"]["message"]
    assert "probe {}" in message, message
    # for contrast: the files the probe could not read exist and are readable by the operator
    for path in (TOKEN, INTEGRITY_KEY):
        assert operator.exec("test", "-s", path, check=False).returncode == 0, path
