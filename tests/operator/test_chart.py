"""The Helm chart: lint, render, least-privilege RBAC checked on a real API server, CRDs in sync."""

from __future__ import annotations

import json
import secrets
import subprocess
from pathlib import Path

import pytest
import yaml
from tests.testenv import require_binary, unavailable
from tests.testenv.binaries import BinaryMissing, prometheus_crds

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "stepflow"


def _helm(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([require_binary("helm"), *args], capture_output=True, text=True,
                          timeout=120)
    if check and proc.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed:\n{proc.stdout}{proc.stderr}")
    return proc


def _render(*sets: str, release: str = "sf", namespace: str = "stepflow-system") -> list[dict]:
    args = ["template", release, str(CHART), "--namespace", namespace]
    for s in sets:
        args += ["--set", s]
    return [d for d in yaml.safe_load_all(_helm(*args).stdout) if d]


def _one(docs: list[dict], kind: str, name: str | None = None) -> dict:
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, [(d["kind"], d["metadata"]["name"]) for d in docs]
    return found[0]


def _rules(role: dict) -> dict[str, set[str]]:
    """resource (group/resource) -> verbs, merged over the role's rules."""
    out: dict[str, set[str]] = {}
    for rule in role["rules"]:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                out.setdefault(f"{group}/{resource}", set()).update(rule["verbs"])
    return out


def test_helm_lint_passes():
    proc = _helm("lint", str(CHART), "--strict")
    assert "0 chart(s) failed" in proc.stdout
    proc = _helm("lint", str(CHART), "--strict", "--set", "watchNamespaces={team-a,team-b}",
                 "--set", "leaderElection.enabled=true", "--set", "replicaCount=2")
    assert "0 chart(s) failed" in proc.stdout
    assert "[INFO]" not in proc.stdout and "[WARNING]" not in proc.stdout, proc.stdout  # icon and all


def test_deployment_runs_kopf_with_the_sandbox_security_context():
    docs = _render("operator.s3RootUri=s3://ml/stepflow", "operator.s3CredentialsSecret=aws",
                   "operator.integrityKeySecret=signing", "image.tag=1.2.3")
    deploy = _one(docs, "Deployment")
    pod = deploy["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["image"] == "ghcr.io/stepflow/stepflow-operator:1.2.3"
    # tini reaps orphaned step processes; stepflow-operator checks its setup before kopf runs.
    assert container["command"] == ["tini", "--", "stepflow-operator"]
    assert container["args"] == ["--all-namespaces", "--log-format=plain"]
    assert pod["securityContext"] == {"seccompProfile": {"type": "RuntimeDefault"}}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {"metrics": 8081, "receiver": 9292}
    # The token: not auto-mounted (0644), but projected 0400 for the operator alone.
    assert pod["automountServiceAccountToken"] is False
    assert _one(docs, "ServiceAccount")["automountServiceAccountToken"] is False
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["service-account"]["projected"]["defaultMode"] == 0o400
    assert volumes["integrity-key"]["secret"]["defaultMode"] == 0o400
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts["service-account"] == "/var/run/secrets/kubernetes.io/serviceaccount"
    sc = container["securityContext"]
    assert sc["runAsUser"] == 0 and sc["allowPrivilegeEscalation"] is False
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"] == {"drop": ["ALL"],
                                  "add": ["CHOWN", "DAC_OVERRIDE", "KILL", "SETUID",
                                          "SETGID"]}
    env = {e["name"]: e for e in container["env"]}
    assert env["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"] == {
        "name": "aws", "key": "AWS_SECRET_ACCESS_KEY"}
    assert env["STEPFLOW_INTEGRITY_KEY_FILE"]["value"] == "/etc/stepflow/integrity/key"
    config = _one(docs, "ConfigMap", "sf-stepflow")["data"]
    assert config["STEPFLOW_S3_ROOT_URI"] == "s3://ml/stepflow"
    assert "AWS_SECRET_ACCESS_KEY" not in json.dumps(config)

    nonroot = _one(_render("sandbox.enabled=false"), "Deployment")
    sc = nonroot["spec"]["template"]["spec"]["containers"][0]["securityContext"]
    assert sc["runAsNonRoot"] is True and sc["capabilities"] == {"drop": ["ALL"]}


def test_the_s3_deadline_is_configured_through_the_configmap():
    config = _one(_render("operator.s3Timeout=5", "operator.s3Attempts=3"), "ConfigMap", "sf-stepflow")["data"]
    assert (config["STEPFLOW_S3_TIMEOUT"], config["STEPFLOW_S3_ATTEMPTS"]) == ("5", "3")
    default = _one(_render(), "ConfigMap", "sf-stepflow")["data"]
    assert "STEPFLOW_S3_TIMEOUT" not in default, "unset: the operator's default (20 s, 5 attempts)"


def test_cluster_rbac_is_least_privilege():
    role = _one(_render(), "ClusterRole")
    assert _rules(role) == {
        "apiextensions.k8s.io/customresourcedefinitions": {"list", "watch"},
        "stepflow.dev/pipelines": {"get", "list", "watch", "patch"},
        "stepflow.dev/pipelineexecutions": {"get", "list", "watch", "patch", "create", "delete"},
        "stepflow.dev/pipelines/status": {"get", "patch"},
        "stepflow.dev/pipelineexecutions/status": {"get", "patch"},
        "/events": {"create", "patch"},
        "events.k8s.io/events": {"create", "patch"},
        "/secrets": {"get"},
        "stepflow.dev/receivers": {"get", "list", "watch", "patch"},
        "stepflow.dev/receivers/status": {"get", "patch"},
        # The kubernetes backend: exactly what a Job per step attempt needs.
        "batch/jobs": {"create", "get", "list", "watch", "delete"},
        "/pods": {"get", "list", "watch"},
        "/pods/log": {"get"},
    }
    elected = _render("leaderElection.enabled=true", "replicaCount=2")
    lease = _one(elected, "Role", "sf-stepflow-leader-election")
    assert lease["metadata"]["namespace"] == "stepflow-system"
    assert lease["rules"] == [
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "resourceNames": ["sf-stepflow"],
         "verbs": ["get", "update"]}]
    deploy = _one(elected, "Deployment")
    args = deploy["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--leader-elect" in args and "--leader-election-id=sf-stepflow" in args
    assert deploy["spec"]["strategy"]["type"] == "RollingUpdate"
    assert _one(elected, "PodDisruptionBudget")["spec"]["minAvailable"] == 1
    assert not [d for d in _render() if d["kind"] in ("PodDisruptionBudget", "Role")]


def test_namespaced_mode_grants_only_in_the_watched_namespaces():
    docs = _render("watchNamespaces={team-a,team-b}")
    roles = [d for d in docs if d["kind"] == "Role"]
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    assert _rules(roles[0])["/secrets"] == {"get"}
    cluster = _rules(_one(docs, "ClusterRole"))
    assert cluster == {"apiextensions.k8s.io/customresourcedefinitions": {"list", "watch"}}
    args = _one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--namespace=team-a" in args and "--namespace=team-b" in args
    assert "--all-namespaces" not in args


def test_several_replicas_without_leader_election_is_refused():
    proc = _helm("template", "sf", str(CHART), "--set", "replicaCount=2", check=False)
    assert proc.returncode != 0 and "leaderElection.enabled" in proc.stderr


def test_chart_crds_are_the_top_level_crds():
    top = {p.name: p.read_bytes() for p in (REPO / "crds").glob("*.yaml")}
    chart = {p.name: p.read_bytes() for p in (CHART / "crds").glob("*.yaml")}
    assert top, "no CRDs under crds/"
    assert chart == top, "charts/stepflow/crds/ differs from crds/: run `make -C charts/stepflow sync-crds`"
    rendered = _helm("template", "sf", str(CHART), "--include-crds").stdout
    names = {d["metadata"]["name"] for d in yaml.safe_load_all(rendered)
             if d and d["kind"] == "CustomResourceDefinition"}
    assert names == {"pipelines.stepflow.dev", "pipelineexecutions.stepflow.dev", "receivers.stepflow.dev"}


def _can_i(kube, sa: str, verb: str, resource: str, namespace: str) -> bool:
    proc = kube.kubectl("auth", "can-i", verb, resource, "-n", namespace, f"--as={sa}",
                        check=False)
    answer = proc.stdout.strip()
    assert answer in ("yes", "no"), proc.stderr
    return answer == "yes"


def test_rendered_chart_applies_and_grants_exactly_what_the_operator_needs(kube):
    release = f"sf{secrets.token_hex(3)}"
    namespace = f"{release}-system"
    kube.kubectl("create", "namespace", namespace)
    docs = _render(release=release, namespace=namespace)
    manifest = "\n---\n".join(yaml.safe_dump(d) for d in docs)
    # Everything is valid for the API server; the workload itself cannot run here (no nodes).
    kube.kubectl("apply", "--dry-run=server", "-f", "-", input=manifest)
    rbac = [d for d in docs if d["kind"] in ("ServiceAccount", "ClusterRole",
                                             "ClusterRoleBinding", "Role", "RoleBinding")]
    kube.kubectl("apply", "-f", "-", input="\n---\n".join(yaml.safe_dump(d) for d in rbac))
    try:
        sa = f"system:serviceaccount:{namespace}:{release}-stepflow"
        elsewhere = "default"
        for verb, resource in [("watch", "pipelines.stepflow.dev"),
                               ("patch", "pipelines.stepflow.dev/status"),
                               ("create", "pipelineexecutions.stepflow.dev"),
                               ("delete", "pipelineexecutions.stepflow.dev"),
                               ("patch", "pipelineexecutions.stepflow.dev/status"),
                               ("create", "events"), ("get", "secrets"),
                               ("create", "jobs.batch"), ("watch", "jobs.batch"), ("delete", "jobs.batch"),
                               ("watch", "pods"), ("get", "pods/log")]:
            assert _can_i(kube, sa, verb, resource, elsewhere), (verb, resource)
        for verb, resource in [("list", "secrets"), ("watch", "secrets"),
                               ("delete", "pipelines.stepflow.dev"),
                               ("update", "pipelines.stepflow.dev"),
                               ("create", "pods"), ("delete", "pods"), ("create", "pods/exec"),
                               ("update", "jobs.batch"), ("patch", "jobs.batch"), ("get", "configmaps"),
                               ("create", "customresourcedefinitions.apiextensions.k8s.io")]:
            assert not _can_i(kube, sa, verb, resource, elsewhere), (verb, resource)
    finally:
        for d in rbac:
            if d["kind"] in ("ClusterRole", "ClusterRoleBinding"):
                kube.kubectl("delete", d["kind"].lower(), d["metadata"]["name"], check=False)


def test_namespaced_release_cannot_touch_other_namespaces(kube):
    release = f"sf{secrets.token_hex(3)}"
    namespace, watched, other = f"{release}-system", f"{release}-team", f"{release}-other"
    for ns in (namespace, watched, other):
        kube.kubectl("create", "namespace", ns)
    docs = _render(f"watchNamespaces={{{watched}}}", release=release, namespace=namespace)
    rbac = [d for d in docs if d["kind"] != "Deployment" and d["kind"] != "ConfigMap"]
    kube.kubectl("apply", "-f", "-", input="\n---\n".join(yaml.safe_dump(d) for d in rbac))
    try:
        sa = f"system:serviceaccount:{namespace}:{release}-stepflow"
        assert _can_i(kube, sa, "get", "secrets", watched)
        assert _can_i(kube, sa, "patch", "pipelines.stepflow.dev/status", watched)
        assert not _can_i(kube, sa, "get", "secrets", other)
        assert not _can_i(kube, sa, "watch", "pipelines.stepflow.dev", other)
    finally:
        for d in rbac:
            if d["kind"] in ("ClusterRole", "ClusterRoleBinding"):
                kube.kubectl("delete", d["kind"].lower(), d["metadata"]["name"], check=False)


def test_steps_run_as_jobs_by_default_with_the_runner_image_and_instance_table():
    docs = _render("steps.image.tag=1.2.3", "steps.instanceTypes.ml\\.tiny.cpu=100m",
                   "steps.instanceTypes.ml\\.tiny.memory=64Mi", "steps.s3CredentialsSecret=s3")
    config = next(d for d in docs if d["kind"] == "ConfigMap" and not d["metadata"]["name"].endswith("-types"))
    assert config["data"]["STEPFLOW_DEFAULT_BACKEND"] == "kubernetes"
    assert config["data"]["STEPFLOW_RUNNER_IMAGE"] == "ghcr.io/stepflow/stepflow-runner:1.2.3"
    assert config["data"]["STEPFLOW_STEP_S3_CREDENTIALS_SECRET"] == "s3"
    table = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-instance-types"))
    assert yaml.safe_load(table["data"]["instance-types.yaml"]) == {"ml.tiny": {"cpu": "100m", "memory": "64Mi"}}
    pod = _one(docs, "Deployment")["spec"]["template"]["spec"]
    mounts = {m["name"]: m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
    assert config["data"]["STEPFLOW_INSTANCE_TYPES_FILE"].startswith(mounts["instance-types"] + "/")


def test_the_step_jobs_limit_reaches_the_operator_as_the_backends_setting():
    from stepflow.backends.kubernetes.settings import step_pods_from_env

    def settings(*values: str):
        docs = _render(*values)
        config = next(d for d in docs if d["kind"] == "ConfigMap" and not d["metadata"]["name"].endswith("-types"))
        env = {k: v for k, v in config["data"].items() if k != "STEPFLOW_INSTANCE_TYPES_FILE"}  # a pod's file
        return step_pods_from_env(env)

    assert settings().max_parallel_jobs is None  # 0, the default: no limit
    assert settings("steps.maxParallelJobs=8").max_parallel_jobs == 8


@pytest.mark.parametrize("values", [[], ["watchNamespaces={a}", "leaderElection.enabled=true", "replicaCount=2"]])
def test_every_rendered_object_is_labelled(values):
    for doc in _render(*values):
        labels = doc["metadata"].get("labels", {})
        assert labels.get("app.kubernetes.io/part-of") == "stepflow", doc["metadata"]["name"]


# ---- values: schema, globs, overrides, optional objects -------------------------------------

@pytest.mark.parametrize("typo, named", [
    ("operator.s3RootUrl=s3://b/p", "s3RootUrl"), ("replicas=2", "replicas"),
    ("metrics.serviceMonitor.enable=true", "enable"), ("operator.logFormat=yaml", "logFormat"),
])
def test_a_typo_in_the_values_fails_the_render_and_names_the_key(typo, named):
    proc = _helm("template", "sf", str(CHART), "--set", typo, check=False)
    assert proc.returncode != 0 and named in proc.stderr, proc.stderr


def test_a_namespace_glob_grants_cluster_wide_and_lists_namespaces():
    docs = _render("watchNamespaces={ml-*,team-a}")
    cluster = _rules(_one(docs, "ClusterRole"))
    assert cluster["/namespaces"] == {"list", "watch"}
    assert cluster["stepflow.dev/pipelines"] == {"get", "list", "watch", "patch"}
    assert cluster["/secrets"] == {"get"}
    assert not [d for d in docs if d["kind"] in ("Role", "RoleBinding")]  # the ClusterRole covers team-a
    args = _one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--namespace=ml-*" in args and "--namespace=team-a" in args


def test_security_contexts_merge_overrides_over_safe_defaults():
    docs = _render("podSecurityContext.fsGroup=2000", "containerSecurityContext.readOnlyRootFilesystem=false",
                   "containerSecurityContext.capabilities.drop={ALL}")
    pod = _one(docs, "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"] == {"seccompProfile": {"type": "RuntimeDefault"}, "fsGroup": 2000}
    sc = pod["containers"][0]["securityContext"]
    assert sc["readOnlyRootFilesystem"] is False and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["add"] == ["CHOWN", "DAC_OVERRIDE", "KILL", "SETUID", "SETGID"]


def test_extras_logs_spread_and_cache_claim(tmp_path):
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump({
        "operator": {"logFormat": "json", "extraArgs": ["--verbose"],
                     "extraEnv": [{"name": "GIT_SSL_CAINFO", "value": "/etc/ca/ca.crt"}]},
        "extraVolumes": [{"name": "ca", "configMap": {"name": "corp-ca"}}],
        "extraVolumeMounts": [{"name": "ca", "mountPath": "/etc/ca", "readOnly": True}],
        "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
                                       "whenUnsatisfiable": "ScheduleAnyway",
                                       "labelSelector": {"matchLabels": {"app.kubernetes.io/name": "stepflow"}}}],
        "cachePersistence": {"enabled": True, "size": "20Gi"},
    }))
    docs = [d for d in yaml.safe_load_all(_helm("template", "sf", str(CHART), "-f", str(values)).stdout) if d]
    pod = _one(docs, "Deployment")["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert "--log-format=json" in container["args"] and container["args"][-1] == "--verbose"
    assert {"name": "GIT_SSL_CAINFO", "value": "/etc/ca/ca.crt"} in container["env"]
    assert {"name": "ca", "mountPath": "/etc/ca", "readOnly": True} in container["volumeMounts"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["ca"] == {"name": "ca", "configMap": {"name": "corp-ca"}}
    assert volumes["cache"] == {"name": "cache", "persistentVolumeClaim": {"claimName": "sf-stepflow-cache"}}
    assert _one(docs, "PersistentVolumeClaim")["spec"]["resources"]["requests"]["storage"] == "20Gi"
    assert pod["topologySpreadConstraints"][0]["topologyKey"] == "kubernetes.io/hostname"
    shared = _helm("template", "sf", str(CHART), "-f", str(values), "--set", "leaderElection.enabled=true",
                   "--set", "replicaCount=2", check=False)
    assert shared.returncode != 0 and "ReadWriteMany" in shared.stderr


def test_services_monitors_ingress_and_network_policy():
    docs = _render("metrics.serviceMonitor.enabled=true", "metrics.podMonitor.enabled=true",
                   "receiver.ingress.enabled=true", "receiver.ingress.hosts[0].host=hooks.example.com",
                   "networkPolicy.enabled=true")
    metrics = _one(docs, "Service", "sf-stepflow-metrics")
    assert metrics["spec"]["ports"] == [{"name": "metrics", "port": 8081, "targetPort": "metrics", "protocol": "TCP"}]
    assert metrics["spec"]["publishNotReadyAddresses"] is True  # a standby is scraped too
    receiver = _one(docs, "Service", "sf-stepflow-receiver")
    assert receiver["spec"]["ports"][0]["targetPort"] == "receiver"
    assert "publishNotReadyAddresses" not in receiver["spec"]  # webhooks reach the active replica only
    assert _one(docs, "ServiceMonitor")["spec"]["endpoints"][0]["port"] == "metrics"
    assert _one(docs, "PodMonitor")["spec"]["podMetricsEndpoints"][0]["port"] == "metrics"
    rule = _one(docs, "Ingress")["spec"]["rules"][0]
    assert rule["host"] == "hooks.example.com"
    assert rule["http"]["paths"][0]["path"] == "/hook/"
    policy = _one(docs, "NetworkPolicy")["spec"]
    assert policy["policyTypes"] == ["Ingress"]
    assert sorted(p["port"] for r in policy["ingress"] for p in r["ports"]) == ["metrics", "receiver"]
    off = _render("receiver.enabled=false", "networkPolicy.enabled=true")
    assert [p["port"] for r in _one(off, "NetworkPolicy")["spec"]["ingress"] for p in r["ports"]] == ["metrics"]
    assert _one(off, "ConfigMap", "sf-stepflow")["data"]["STEPFLOW_RECEIVER_ADDRESS"] == "off"
    assert not [d for d in off if d["kind"] == "Service" and d["metadata"]["name"].endswith("-receiver")]


#: Values the server-side dry run checks against the API server's own OpenAPI schema, and
#: ServiceMonitor/PodMonitor against prometheus-operator's own CRDs (the fixture below).
VALUES_MATRIX = {
    "defaults": [],
    "namespaced": ["watchNamespaces={{{ns}-team}}"],
    "glob": ["watchNamespaces={{{ns}-*}}"],
    "ha": ["leaderElection.enabled=true", "replicaCount=2", "topologySpreadConstraints[0].maxSkew=1",
           "topologySpreadConstraints[0].topologyKey=kubernetes.io/hostname",
           "topologySpreadConstraints[0].whenUnsatisfiable=DoNotSchedule"],
    "hardened": ["sandbox.enabled=false", "networkPolicy.enabled=true", "operator.logFormat=json",
                 "podSecurityContext.fsGroup=65532", "containerSecurityContext.readOnlyRootFilesystem=true",
                 "receiver.ingress.enabled=true", "receiver.ingress.hosts[0].host=hooks.example.com",
                 "receiver.ingress.className=nginx", "receiver.service.type=LoadBalancer"],
    "monitors": ["metrics.serviceMonitor.enabled=true", "metrics.serviceMonitor.interval=15s",
                 "metrics.serviceMonitor.labels.release=kube-prometheus-stack", "metrics.podMonitor.enabled=true",
                 "metrics.podMonitor.scrapeTimeout=5s", "leaderElection.enabled=true", "replicaCount=2"],
    "cache-claim": ["cachePersistence.enabled=true", "cachePersistence.storageClassName=standard",
                    "operator.integrityKeySecret=signing", "operator.s3CredentialsSecret=aws",
                    "extraVolumes[0].name=ca", "extraVolumes[0].configMap.name=corp-ca",
                    "extraVolumeMounts[0].name=ca", "extraVolumeMounts[0].mountPath=/etc/ca"],
}


@pytest.fixture(scope="module")
def monitor_crds(kube) -> list[str]:
    """prometheus-operator's ServiceMonitor and PodMonitor CRDs (scripts/testenv install
    fetched them, pinned), served by the test API server; their kinds."""
    try:
        files = prometheus_crds()
    except BinaryMissing as exc:
        unavailable(str(exc))
        raise
    for path in files:
        kube.kubectl("apply", "--server-side", "-f", str(path))
    names = [yaml.safe_load(path.read_text())["metadata"]["name"] for path in files]
    kube.kubectl("wait", "--for=condition=Established", "--timeout=60s", *[f"crd/{n}" for n in names])
    return [yaml.safe_load(path.read_text())["spec"]["names"]["kind"] for path in files]


@pytest.mark.parametrize("case", sorted(VALUES_MATRIX))
def test_the_values_matrix_passes_a_server_side_dry_run(kube, monitor_crds, case):
    release = f"sf{secrets.token_hex(3)}"
    namespace = f"{release}-system"
    for ns in (namespace, f"{namespace}-team"):
        kube.kubectl("create", "namespace", ns)
    sets = [s.format(ns=namespace) for s in VALUES_MATRIX[case]]
    docs = _render(*sets, release=release, namespace=namespace)
    kinds = {d["kind"] for d in docs}
    assert {"Deployment", "ServiceAccount", "ClusterRole", "ConfigMap", "Service"} <= kinds, kinds
    if case == "monitors":
        assert set(monitor_crds) <= kinds, kinds
    manifest = "\n---\n".join(yaml.safe_dump(d) for d in docs)
    # --validate=strict: an unknown or misplaced field is an error, as the API server sees it.
    kube.kubectl("apply", "--dry-run=server", "--validate=strict", "-f", "-", input=manifest)


def test_a_glob_release_can_act_in_a_matching_namespace(kube):
    release = f"sf{secrets.token_hex(3)}"
    namespace, matching = f"{release}-system", f"{release}-ml-a"
    for ns in (namespace, matching):
        kube.kubectl("create", "namespace", ns)
    docs = _render(f"watchNamespaces={{{release}-ml-*}}", release=release, namespace=namespace)
    rbac = [d for d in docs if d["kind"] in ("ServiceAccount", "ClusterRole", "ClusterRoleBinding")]
    kube.kubectl("apply", "-f", "-", input="\n---\n".join(yaml.safe_dump(d) for d in rbac))
    try:
        sa = f"system:serviceaccount:{namespace}:{release}-stepflow"
        for verb, resource in [("watch", "pipelines.stepflow.dev"), ("patch", "pipelines.stepflow.dev/status"),
                               ("create", "pipelineexecutions.stepflow.dev"), ("get", "secrets"),
                               ("watch", "receivers.stepflow.dev")]:
            assert _can_i(kube, sa, verb, resource, matching), (verb, resource)
        assert _can_i(kube, sa, "list", "namespaces", matching)
        assert not _can_i(kube, sa, "list", "secrets", matching)
    finally:
        for d in rbac:
            if d["kind"] in ("ClusterRole", "ClusterRoleBinding"):
                kube.kubectl("delete", d["kind"].lower(), d["metadata"]["name"], check=False)
