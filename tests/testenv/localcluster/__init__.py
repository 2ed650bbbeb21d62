"""A single-node Kubernetes that runs real pods, for tests and ``make demo-cluster``.

containerd + runc (Debian's) and etcd, kube-apiserver, kube-controller-manager,
kube-scheduler and kubelet built by scripts/testenv at the pinned version; the bridge CNI
plugin; images imported from OCI archives (scripts/testenv-images). No kube-proxy, no
CoreDNS: pods reach the API server, and any host-side server a test starts, on the bridge's
gateway address (``Layout.gateway``), which is where the API server listens. See
docs/TESTING.md ("Real pods").

One cluster per machine: the kubelet hard-codes /var/lib/kubelet/device-plugins and the
cluster owns host-wide names (the bridge, fixed ports). ``up`` in the same state directory
reuses a healthy cluster and cleans up a dead one first; ``up`` while another state
directory's cluster runs fails at once, naming it.

Standard library only (``scripts/testenv cluster`` runs it with the system python3):

    python3 -m tests.testenv.localcluster up|down|status
"""

from .cluster import ClusterError, LocalCluster
from .layout import Layout

__all__ = ["ClusterError", "Layout", "LocalCluster"]
