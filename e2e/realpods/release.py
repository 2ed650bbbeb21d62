"""The chart installed on the local cluster as the kind suite installs it, plus what this
cluster needs: the API server's address for the operator's pod (no kube-proxy, so the
``kubernetes`` Service leads nowhere) and, optionally, an S3 store on the bridge gateway.
Shared by the fixtures (conftest.py) and ``make demo-cluster`` (demo.py)."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field

from tests.testenv.localcluster.layout import GATEWAY, PORTS

from e2e.cluster import CHART, Cluster, CommandError, Release, run
from e2e.gitrepo import SERVER_NAME, SERVER_PORT

#: The instance table of the tests: this node has 2 CPUs, so steps request little. ``ml.test.*``
#: provoke failures: a memory limit a hog exceeds, a request no node can satisfy.
TEST_INSTANCE_TYPES = {"ml.m5.large": {"cpu": "50m", "memory": "384Mi"},
                       "ml.test.small-memory": {"cpu": "50m", "memory": "160Mi"},
                       "ml.test.too-big": {"cpu": "64", "memory": "1Gi"}}


@dataclass
class LocalRelease(Release):
    """``helm install`` of charts/stepflow as the kind suite does, plus the API server's
    address for the pod, and optionally an S3 store with its credentials Secret. With S3,
    steps run as Jobs (backend kubernetes, the chart's default) in the runner image, with the
    store's credentials and the integrity key from Secrets of the watched namespace."""

    s3: dict[str, str] = field(default_factory=dict)
    runner: str = ""
    steps: dict = field(default_factory=dict)
    #: Chart values merged over the ones above (e.g. replicaCount, leaderElection).
    values: dict = field(default_factory=dict)

    def install(self) -> None:
        repository, _, tag = self.image.rpartition(":")
        key = secrets.token_hex(32)
        self.cluster.kubectl("create", "namespace", self.namespace)
        self.cluster.kubectl("-n", self.namespace, "create", "secret", "generic", "stepflow-signing",
                             f"--from-literal=key={key}")
        operator = {"s3RootUri": self.store, "integrityKeySecret": "stepflow-signing",
                    "extraEnv": [{"name": "KUBERNETES_SERVICE_HOST", "value": GATEWAY},
                                 {"name": "KUBERNETES_SERVICE_PORT", "value": str(PORTS["apiserver"])}]}
        values: dict = {"image": {"repository": repository, "tag": tag, "pullPolicy": "Never"},
                        "watchNamespaces": [self.watched], "operator": operator}
        if self.s3:
            credentials = [f"--from-literal=AWS_ACCESS_KEY_ID={self.s3['access_key']}",
                           f"--from-literal=AWS_SECRET_ACCESS_KEY={self.s3['secret_key']}"]
            self.cluster.kubectl("-n", self.namespace, "create", "secret", "generic", "stepflow-s3", *credentials)
            operator.update(s3CredentialsSecret="stepflow-s3", s3EndpointUrl=self.s3["endpoint_url"],
                            awsRegion=self.s3["region"])
            # Step pods mount Secrets of their own namespace: the watched one.
            self.cluster.kubectl("create", "namespace", self.watched, check=False)
            self.cluster.kubectl("-n", self.watched, "create", "secret", "generic", "stepflow-step-s3", *credentials)
            self.cluster.kubectl("-n", self.watched, "create", "secret", "generic", "stepflow-step-signing",
                                 f"--from-literal=key={key}")
            runner_repository, _, runner_tag = self.runner.rpartition(":")
            values["steps"] = {"image": {"repository": runner_repository, "tag": runner_tag, "pullPolicy": "Never"},
                               "s3CredentialsSecret": "stepflow-step-s3", "integrityKeySecret": "stepflow-step-signing",
                               "instanceTypes": TEST_INSTANCE_TYPES, **self.steps}
        else:
            operator["defaultBackend"] = "local"  # a file:// store in the operator's pod
        values = _merged(values, self.values)
        run([self.cluster.tools.helm, "--kubeconfig", str(self.cluster.kubeconfig), "install", self.name,
             str(CHART), "--namespace", self.namespace, "--wait", "--timeout", "5m", "--values", "-"],
            input=json.dumps(values), timeout=600)


    def pod_logs(self, pod: str, tail: int = 400, timestamps: bool = False) -> str:
        """The operator container's log in one pod of the release (a replica, not "the" one)."""
        proc = self.cluster.kubectl("-n", self.namespace, "logs", pod, "-c", "operator", f"--tail={tail}",
                                    *(["--timestamps"] if timestamps else []), check=False)
        return proc.stdout + proc.stderr


def _merged(base: dict, over: dict) -> dict:
    out = dict(base)
    for key, value in over.items():
        out[key] = _merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def install_release(cluster: Cluster, image: str, watched: str, **kw) -> LocalRelease:
    release = LocalRelease(cluster, name=f"stepflow-{secrets.token_hex(3)}", namespace=f"{watched}-system",
                           watched=watched, image=image, **kw)
    try:
        release.install()
    except CommandError as exc:
        raise CommandError(f"{exc}\n{release.diagnostics()}") from None
    return release


def uninstall_release(cluster: Cluster, release: LocalRelease) -> None:
    release.uninstall()
    cluster.kubectl("delete", "namespace", release.namespace, "--wait=false", check=False)


def git_pod_url(cluster: Cluster, namespace: str) -> str:
    """The in-cluster git server by pod IP: there is no cluster DNS or kube-proxy here."""
    ip = cluster.get(namespace, "pod", SERVER_NAME)["status"]["podIP"]
    return f"http://{ip}:{SERVER_PORT}"


