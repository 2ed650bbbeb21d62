"""The test session's view of the local cluster: preflight, images, up, and teardown.

Used by the ``local_cluster`` fixture (tests/testenv/plugin.py). What a machine lacks is
reported as ``Unavailable`` with the command that fixes it; the fixture skips on it, or
fails when ``CI`` is set.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from ..binaries import REPO_ROOT, BinaryMissing, bin_dir, bin_path
from .cluster import LocalCluster
from .layout import GATEWAY

TESTENV = REPO_ROOT / "scripts" / "testenv"
INSTALL = "scripts/testenv install cluster"


class Unavailable(RuntimeError):
    """This machine cannot run the cluster; the message names the fix."""


def preflight() -> None:
    if os.geteuid() != 0:
        raise Unavailable("the local cluster needs root (containerd, kubelet, mounts, a bridge)")
    for name in ("kube-apiserver", "kubectl", "etcd", "kubelet", "kube-controller-manager", "kube-scheduler", "helm"):
        try:
            bin_path(name)
        except BinaryMissing as exc:
            raise Unavailable(f"{exc}; the cluster's binaries come with `{INSTALL}`") from None
    for tool in ("containerd", "ctr", "runc", "ip", "iptables"):
        if shutil.which(tool) is None:
            raise Unavailable(f"{tool} is not installed; run `{INSTALL}`")
    if not Path("/usr/lib/cni/bridge").exists():
        raise Unavailable(f"the CNI plugins (/usr/lib/cni) are not installed; run `{INSTALL}`")


def build_images() -> dict[str, Any]:
    """scripts/testenv images: built when this tree's are missing (the stepflow layers only,
    offline, once the base and the dependency wheels are cached)."""
    proc = subprocess.run([str(TESTENV), "images"], capture_output=True, text=True, timeout=1800, check=False)
    if proc.returncode:
        raise RuntimeError(f"scripts/testenv images failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout)


class ClusterSession:
    """What the ``local_cluster`` fixture yields.

    ``kubeconfig`` (path), ``api_client`` (kubernetes.client.ApiClient), ``images`` (name ->
    {"ref", "archive"}: pause, runner, operator, base), ``gateway`` (the address pods reach
    the host on: bind servers for pods there), ``env`` (KUBECONFIG and PATH with kubectl and
    helm), ``kubectl(...)``, ``helm(...)``, ``logs_tail(n)``, ``up_seconds`` (None if reused).
    """

    def __init__(self, cluster: LocalCluster, images: dict[str, Any]) -> None:
        self.cluster = cluster
        self.images = images
        self.kubeconfig = cluster.kubeconfig
        self.gateway = GATEWAY
        self.up_seconds = cluster.up_seconds
        self._api_client: Any = None

    @property
    def api_client(self) -> Any:
        if self._api_client is None:
            self._api_client = self.cluster.api_client()
        return self._api_client

    @property
    def env(self) -> dict[str, str]:
        path = os.pathsep.join([str(bin_dir("kubectl")), str(bin_dir("helm")), os.environ.get("PATH", "")])
        return {"KUBECONFIG": self.kubeconfig, "PATH": path}

    def kubectl(self, *args: str, **kw: Any) -> subprocess.CompletedProcess:
        return self.cluster.kubectl(*args, **kw)

    def helm(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
        return subprocess.run([bin_path("helm"), "--kubeconfig", self.kubeconfig, *args], capture_output=True,
                              text=True, timeout=timeout, check=True)

    def logs_tail(self, n: int = 40) -> str:
        return self.cluster.logs_tail(n)

    def close(self) -> None:
        if self._api_client is not None:
            self._api_client.close()
            self._api_client = None


def start() -> ClusterSession:
    """Preflight, images, up (or reuse). Raises Unavailable, ClusterError or RuntimeError."""
    preflight()
    images = build_images()
    cluster = LocalCluster().up(images)
    return ClusterSession(cluster, images)


def finish(session: ClusterSession) -> None:
    """Down, when this session started the cluster (a reused one is left as it was)."""
    session.close()
    if session.cluster.started_here and not os.environ.get("STEPFLOW_CLUSTER_KEEP"):
        session.cluster.down()
