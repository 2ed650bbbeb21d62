"""Where the local cluster keeps its files, which ports and addresses it takes."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..binaries import cache_dir

#: Fixed, below the Linux ephemeral range (32768-60999) that free_port() and the other
#: test servers draw from, so a test session's random ports never take one of these.
PORTS = {
    "etcd": 20379,
    "etcd-peer": 20380,
    "etcd-metrics": 20381,
    "apiserver": 20443,
    "kubelet": 20250,
    "kubelet-healthz": 20248,
    "controller-manager": 20257,
    "scheduler": 20259,
    "containerd-stream": 20010,
}
BRIDGE = "stepflow0"
POD_SUBNET = "10.244.77.0/24"
GATEWAY = "10.244.77.1"
SERVICE_CIDR = "10.96.77.0/24"
NODE_NAME = "localhost"
#: The machine-wide record of the running cluster: which state directory owns the host.
OWNER_FILE = Path("/run/stepflow-testenv-cluster.json")


@dataclass(frozen=True)
class Layout:
    """Paths of one cluster's state; everything but the kubelet's hard-coded paths is here."""

    root: Path

    @classmethod
    def default(cls) -> Layout:
        env = os.environ.get("STEPFLOW_CLUSTER_DIR")
        return cls(Path(env) if env else cache_dir() / "cluster")

    @property
    def pki(self) -> Path:
        return self.root / "pki"

    @property
    def conf(self) -> Path:
        return self.root / "conf"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def run(self) -> Path:
        return self.root / "run"

    @property
    def state(self) -> Path:
        return self.root / "state"

    @property
    def kubeconfig(self) -> Path:
        return self.root / "kubeconfig"

    @property
    def containerd_socket(self) -> Path:
        return self.state / "containerd" / "containerd.sock"

    @property
    def sysctls_file(self) -> Path:
        return self.root / "sysctls-before.json"

    @property
    def gateway(self) -> str:
        return GATEWAY

    @property
    def server(self) -> str:
        return f"https://{GATEWAY}:{PORTS['apiserver']}"
