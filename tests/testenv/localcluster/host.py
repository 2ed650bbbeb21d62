"""The cluster's effects on the host outside its state directory, made and undone here.

Made by ``up``: the bridge (created before the API server, which listens on its gateway
address), one iptables rule that keeps pod traffic on the bridge, and a record of the
sysctls the kubelet and the bridge plugin change. Undone by ``cleanup``: containerd shims
and container processes, the kubelet's cgroups, mounts under the state directory and the
pods' network namespaces, the bridge, the rule, the kubelet's iptables chains and
hard-coded directories, and the recorded sysctls. ``cleanup`` is safe to run at any time,
also after a run killed without ``down``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from .layout import BRIDGE, GATEWAY, POD_SUBNET, Layout

#: What kubelet (protectKernelDefaults: false) and the bridge plugin (isGateway) set.
SYSCTLS = ("vm/overcommit_memory", "vm/panic_on_oom", "kernel/panic", "kernel/panic_on_oops",
           "kernel/keys/root_maxkeys", "kernel/keys/root_maxbytes", "net/ipv4/ip_forward")
FORWARD_RULE = ["FORWARD", "-i", BRIDGE, "!", "-o", BRIDGE, "-j", "DROP",
                "-m", "comment", "--comment", "stepflow-testenv: pods stay on the bridge"]
KUBELET_CHAINS = {"filter": ["KUBE-FIREWALL", "KUBE-KUBELET-CANARY"],
                  "nat": ["KUBE-KUBELET-CANARY", "KUBE-MARK-MASQ", "KUBE-POSTROUTING", "KUBE-MARK-DROP"],
                  "mangle": ["KUBE-KUBELET-CANARY", "KUBE-IPTABLES-HINT"]}
HARD_CODED_DIRS = (Path("/var/lib/kubelet/device-plugins"), Path("/var/lib/kubelet/plugins_registry"),
                   Path("/var/lib/kubelet/pod-resources"), Path("/var/lib/cni/results"))


def _quiet(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(list(argv), capture_output=True, text=True, check=False)


# ---- sysctls ------------------------------------------------------------------------------
def record_sysctls(layout: Layout) -> None:
    """Remember the values before the cluster first touched them (kept across killed runs)."""
    if layout.sysctls_file.exists():
        return
    values = {}
    for name in SYSCTLS:
        try:
            values[name] = Path("/proc/sys", name).read_text().strip()
        except OSError:
            continue
    layout.root.mkdir(parents=True, exist_ok=True)
    layout.sysctls_file.write_text(json.dumps(values, indent=2))


def restore_sysctls(layout: Layout) -> list[str]:
    restored = []
    if not layout.sysctls_file.exists():
        return restored
    for name, value in json.loads(layout.sysctls_file.read_text()).items():
        path = Path("/proc/sys", name)
        try:
            if path.read_text().strip() != value:
                path.write_text(value + "\n")
                restored.append(f"{name.replace('/', '.')}={value}")
        except OSError:
            continue
    layout.sysctls_file.unlink()
    return restored


# ---- network ------------------------------------------------------------------------------
def address_owner(address: str) -> str | None:
    """The interface holding ``address``, if any."""
    out = _quiet("ip", "-o", "-4", "addr", "show").stdout
    for line in out.splitlines():
        words = line.split()
        if len(words) > 3 and words[3].split("/")[0] == address:
            return words[1]
    return None


def ensure_bridge() -> None:
    """The pods' bridge with the gateway address, up before the API server binds to it."""
    owner = address_owner(GATEWAY)
    if owner not in (None, BRIDGE):
        raise RuntimeError(f"{GATEWAY} (the test cluster's gateway) is already on interface {owner}")
    if _quiet("ip", "link", "show", BRIDGE).returncode != 0:
        subprocess.run(["ip", "link", "add", BRIDGE, "type", "bridge"], check=True)
    if owner is None:
        prefix = POD_SUBNET.split("/")[1]
        subprocess.run(["ip", "addr", "add", f"{GATEWAY}/{prefix}", "dev", BRIDGE], check=True)
    subprocess.run(["ip", "link", "set", BRIDGE, "up"], check=True)
    if _quiet("iptables", "-C", *FORWARD_RULE).returncode != 0:
        subprocess.run(["iptables", "-I", *FORWARD_RULE], check=True)


def remove_network() -> None:
    while _quiet("iptables", "-C", *FORWARD_RULE).returncode == 0:
        _quiet("iptables", "-D", *FORWARD_RULE)
    if _quiet("ip", "link", "show", BRIDGE).returncode == 0:
        _quiet("ip", "link", "del", BRIDGE)
    for table, chains in KUBELET_CHAINS.items():
        for chain in chains:
            _remove_chain(table, chain)


def _remove_chain(table: str, chain: str) -> None:
    if _quiet("iptables", "-t", table, "-S", chain).returncode != 0:
        return
    # first the jumps to it from other chains, then the chain itself
    for line in _quiet("iptables", "-t", table, "-S").stdout.splitlines():
        words = line.split()
        if words[:1] == ["-A"] and "-j" in words and words[words.index("-j") + 1] == chain:
            _quiet("iptables", "-t", table, "-D", *words[1:])
    _quiet("iptables", "-t", table, "-F", chain)
    _quiet("iptables", "-t", table, "-X", chain)


# ---- processes, cgroups, mounts -------------------------------------------------------------
def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def shim_pids(layout: Layout) -> list[int]:
    """containerd-shim processes of this cluster's containerd (matched by its socket)."""
    socket = str(layout.containerd_socket)
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            argv = _cmdline(int(entry))
            if argv and "containerd-shim" in argv[0] and any(socket in a for a in argv):
                found.append(int(entry))
    return found


def kubepods_cgroups() -> list[Path]:
    return [p for p in Path("/sys/fs/cgroup").glob("*/kubepods") if p.is_dir()]


def _cgroup_pids(root: Path) -> set[int]:
    pids: set[int] = set()
    for procs in root.rglob("cgroup.procs"):
        try:
            pids.update(int(x) for x in procs.read_text().split())
        except OSError:
            continue
    return pids


def kill_containers(layout: Layout, timeout: float = 20) -> None:
    """SIGKILL every shim of this cluster and every process left in the kubepods cgroups."""
    deadline = time.monotonic() + timeout
    while True:
        pids = set(shim_pids(layout))
        for root in kubepods_cgroups():
            pids |= _cgroup_pids(root)
        pids.discard(os.getpid())
        if not pids:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"processes survived SIGKILL: {sorted(pids)}")
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        time.sleep(0.1)  # the kernel reaps asynchronously; polled against the deadline above


def remove_cgroups() -> None:
    for root in kubepods_cgroups():
        for d in sorted((p for p in root.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
            try:
                d.rmdir()
            except OSError:
                pass
        try:
            root.rmdir()
        except OSError:
            pass


def mounts_under(prefixes: list[str]) -> list[str]:
    found = []
    with open("/proc/self/mounts") as f:
        for line in f:
            target = line.split()[1].replace("\\040", " ")
            if any(target == p or target.startswith(p.rstrip("/") + "/") for p in prefixes):
                found.append(target)
    return sorted(found, key=len, reverse=True)


def unmount_all(layout: Layout) -> None:
    netns_dir = "/run/netns"
    for target in mounts_under([str(layout.root)]):
        _quiet("umount", "-l", target)
    for target in mounts_under([netns_dir, "/var/run/netns"]):
        if os.path.basename(target).startswith("cni-"):
            _quiet("umount", "-l", target)
    for ns in Path(netns_dir).glob("cni-*"):
        try:
            ns.unlink()
        except OSError:
            pass


def remove_hard_coded_dirs(other_containerd: bool) -> None:
    for d in HARD_CODED_DIRS:
        shutil.rmtree(d, ignore_errors=True)
    for d in (Path("/var/lib/kubelet"), Path("/var/lib/cni")):
        try:
            d.rmdir()
        except OSError:
            pass
    if not other_containerd:
        for d in ("s", "fifo", "runc"):
            shutil.rmtree(Path("/run/containerd") / d, ignore_errors=True)
        try:
            Path("/run/containerd").rmdir()
        except OSError:
            pass


def leftovers(layout: Layout) -> list[str]:
    """What ``cleanup`` should have removed and did not (empty after a clean ``down``)."""
    found = [f"shim pid {p}" for p in shim_pids(layout)]
    found += [f"cgroup {c}" for c in kubepods_cgroups()]
    found += [f"mount {m}" for m in mounts_under([str(layout.root)])]
    found += [f"netns {n}" for n in Path("/run/netns").glob("cni-*")] if Path("/run/netns").exists() else []
    if _quiet("ip", "link", "show", BRIDGE).returncode == 0:
        found.append(f"bridge {BRIDGE}")
    if _quiet("iptables", "-C", *FORWARD_RULE).returncode == 0:
        found.append("iptables FORWARD rule")
    found += [f"pid file {p}" for p in layout.run.glob("*.pid")] if layout.run.exists() else []
    return found
