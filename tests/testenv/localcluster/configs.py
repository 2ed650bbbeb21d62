"""Configuration files of containerd, the CNI network, the kubelet, and the kubeconfig.

JSON throughout (YAML is a superset, and the system python3 has no yaml module).
"""

from __future__ import annotations

import json
from pathlib import Path

from .layout import BRIDGE, GATEWAY, POD_SUBNET, PORTS, Layout


def containerd_toml(layout: Layout, pause_image: str) -> str:
    s = layout.state
    return f'''version = 2
root = "{s}/containerd/root"
state = "{s}/containerd/state"
[grpc]
  address = "{layout.containerd_socket}"
[ttrpc]
  address = "{layout.containerd_socket}.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{pause_image}"
  stream_server_address = "127.0.0.1"
  stream_server_port = "{PORTS['containerd-stream']}"
  # Required on these VMs: their capability bounding set has no CAP_SYS_RESOURCE, so no one
  # may lower oom_score_adj, and without this every pod sandbox (which asks for -998) fails
  # in runc with "can't get final child's PID from pipe: EOF".
  restrict_oom_score_adj = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "{s}/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{s}/cni/net.d"
'''


def cni_conflist(layout: Layout) -> str:
    """A bridge network on which pods reach each other and the gateway (the host), and no
    further: no masquerade, and the host drops forwarding off the bridge (see host.py)."""
    return json.dumps({
        "cniVersion": "0.4.0",
        "name": "stepflow",
        "plugins": [{
            "type": "bridge", "bridge": BRIDGE, "isGateway": True, "ipMasq": False, "hairpinMode": True,
            "ipam": {"type": "host-local", "dataDir": str(layout.state / "cni" / "ipam"),
                     "ranges": [[{"subnet": POD_SUBNET, "gateway": GATEWAY}]],
                     "routes": [{"dst": "0.0.0.0/0"}]},
        }],
    }, indent=2)


def kubelet_config(layout: Layout) -> str:
    return json.dumps({
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "cgroupDriver": "cgroupfs",
        "failCgroupV1": False,
        "containerRuntimeEndpoint": f"unix://{layout.containerd_socket}",
        "address": "127.0.0.1",
        "port": PORTS["kubelet"],
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": PORTS["kubelet-healthz"],
        "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": False},
                           "x509": {"clientCAFile": str(layout.pki / "ca.crt")}},
        "authorization": {"mode": "AlwaysAllow"},
        "failSwapOn": False,
        "podLogsDir": str(layout.state / "pod-logs"),
        # No cluster DNS and no resolver of the host's: a pod's traffic stays on the bridge.
        "resolvConf": "",
        # The imported images are all there is: never collect them, never evict for a full disk.
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "evictionHard": {"memory.available": "50Mi", "nodefs.available": "1%", "imagefs.available": "1%",
                         "nodefs.inodesFree": "1%"},
        "serializeImagePulls": False,
    }, indent=2)


def kubeconfig(layout: Layout, token: str) -> str:
    return json.dumps({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "stepflow-local", "cluster": {
            "server": layout.server, "certificate-authority": str(layout.pki / "ca.crt")}}],
        "users": [{"name": "stepflow-admin", "user": {"token": token}}],
        "contexts": [{"name": "stepflow-local", "context": {
            "cluster": "stepflow-local", "user": "stepflow-admin", "namespace": "default"}}],
        "current-context": "stepflow-local",
    }, indent=2)


def write_all(layout: Layout, token: str, pause_image: str) -> None:
    layout.conf.mkdir(parents=True, exist_ok=True)
    (layout.state / "cni" / "net.d").mkdir(parents=True, exist_ok=True)
    (layout.conf / "containerd.toml").write_text(containerd_toml(layout, pause_image))
    (layout.state / "cni" / "net.d" / "10-stepflow.conflist").write_text(cni_conflist(layout))
    (layout.conf / "kubelet.json").write_text(kubelet_config(layout))
    path: Path = layout.kubeconfig
    path.write_text(kubeconfig(layout, token))
    path.chmod(0o600)
