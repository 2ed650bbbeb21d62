"""Start, check and stop the local cluster's daemons; the API shared by the CLI and the fixture.

The daemons outlive the process that started them (``scripts/testenv cluster up`` returns,
the cluster stays): each is a session leader with a pid file holding its pid and start time,
so a pid reused by another process is never taken for a daemon. A cluster whose pid files
name dead processes is cleaned up by the next ``up`` before it starts anew.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path

from ..binaries import bin_path
from . import configs, host
from .layout import GATEWAY, NODE_NAME, OWNER_FILE, PORTS, SERVICE_CIDR, Layout
from .pki import ensure_pki

#: Start order; stopped in reverse.
DAEMONS = ("containerd", "etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet")


class ClusterError(RuntimeError):
    """The cluster could not start (or stop); the message says why and where the logs are."""


def _wait(predicate: Callable[[], object], timeout: float, what: str, interval: float = 0.2,
          check: Callable[[], None] | None = None) -> None:
    """Poll ``predicate`` until it is truthy; ``check`` raises when a daemon died meanwhile."""
    deadline = time.monotonic() + timeout
    while True:
        if check is not None:
            check()
        try:
            if predicate():
                return
        except (OSError, ValueError, urllib.error.URLError, subprocess.SubprocessError):
            pass
        if time.monotonic() > deadline:
            raise ClusterError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def _start_time(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


class LocalCluster:
    """One single-node cluster, described by its ``Layout``.

    ``up(images)`` starts it (or reuses it when healthy) and imports the image archives;
    ``down()`` stops it and undoes every host change; ``healthy()``; ``status()``;
    ``kubeconfig`` (path); ``api_client()``; ``kubectl(...)``; ``logs_tail(n)``.
    """

    def __init__(self, layout: Layout | None = None) -> None:
        self.layout = layout or Layout.default()
        self.started_here = False
        self.up_seconds: float | None = None

    # ---- pid files ----------------------------------------------------------------------
    def _pid_file(self, name: str) -> Path:
        return self.layout.run / f"{name}.pid"

    def pid(self, name: str) -> int | None:
        """The daemon's pid when it runs (same pid and start time as recorded)."""
        try:
            pid_text, started = self._pid_file(name).read_text().split()
        except (OSError, ValueError):
            return None
        pid = int(pid_text)
        return pid if _start_time(pid) == started else None

    def _start(self, name: str, argv: Sequence[str | Path], env: dict[str, str] | None = None) -> None:
        if self.pid(name):
            return
        self.layout.logs.mkdir(parents=True, exist_ok=True)
        self.layout.run.mkdir(parents=True, exist_ok=True)
        log = open(self.layout.logs / f"{name}.log", "ab")  # noqa: SIM115 - the child keeps it
        log.write(f"\n$ {' '.join(map(str, argv))}\n".encode())
        log.flush()
        proc = subprocess.Popen([str(a) for a in argv], stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True, close_fds=True,
                                env={**os.environ, **(env or {})})
        log.close()
        self._pid_file(name).write_text(f"{proc.pid} {_start_time(proc.pid)}\n")

    def _alive_or_raise(self, *names: str) -> Callable[[], None]:
        def check() -> None:
            for name in names:
                if not self.pid(name):
                    raise ClusterError(f"{name} exited; last lines of {self.layout.logs / (name + '.log')}:\n"
                                       f"{self.tail(name, 25)}")
        return check

    def _stop(self, name: str, timeout: float = 10) -> None:
        pid = self.pid(name)
        if pid:
            try:
                os.killpg(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            deadline = time.monotonic() + timeout
            # A daemon started by a process that has exited is reparented to PID 1, which
            # on these VMs may never reap it: an exited daemon can stay a zombie.
            while _start_time(pid) is not None and not _zombie(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            _wait(lambda: _start_time(pid) is None or _zombie(pid), 10, f"{name} (pid {pid}) to exit")
        self._pid_file(name).unlink(missing_ok=True)

    # ---- API ---------------------------------------------------------------------------------
    @property
    def kubeconfig(self) -> str:
        return str(self.layout.kubeconfig)

    def token(self) -> str:
        return (self.layout.pki / "admin.token").read_text().strip()

    def _get(self, path: str, timeout: float = 3) -> tuple[int, bytes]:
        ctx = ssl.create_default_context(cafile=str(self.layout.pki / "ca.crt"))
        req = urllib.request.Request(self.layout.server + path, headers={"Authorization": f"Bearer {self.token()}"})
        try:
            with urllib.request.urlopen(req, context=ctx, timeout=timeout) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def _node_ready(self) -> bool:
        status, body = self._get(f"/api/v1/nodes/{NODE_NAME}")
        if status != 200:
            return False
        conditions = json.loads(body).get("status", {}).get("conditions", [])
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

    def healthy(self) -> bool:
        """Every daemon runs, the API server is ready and the node is Ready."""
        if not all(self.pid(n) for n in DAEMONS):
            return False
        try:
            status, body = self._get("/readyz")
            return status == 200 and body.strip() == b"ok" and self._node_ready()
        except (OSError, urllib.error.URLError, ValueError):
            return False

    def ctr(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        return subprocess.run(["ctr", "--address", str(self.layout.containerd_socket), "-n", "k8s.io", *args],
                              capture_output=True, text=True, timeout=timeout, check=False)

    def kubectl(self, *args: str, input: str | None = None, check: bool = True,  # noqa: A002
                timeout: float = 120) -> subprocess.CompletedProcess:
        proc = subprocess.run([bin_path("kubectl"), "--kubeconfig", self.kubeconfig, *args], input=input,
                              capture_output=True, text=True, timeout=timeout, check=False)
        if check and proc.returncode:
            raise ClusterError(f"kubectl {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}{proc.stderr}")
        return proc

    def api_client(self):  # noqa: ANN201 - kubernetes.client.ApiClient (needs the venv)
        from kubernetes import config

        return config.new_client_from_config(config_file=self.kubeconfig, persist_config=False)

    # ---- images ------------------------------------------------------------------------------
    def images(self) -> set[str]:
        proc = self.ctr("images", "ls", "-q")
        return set(proc.stdout.split()) if proc.returncode == 0 else set()

    def import_images(self, archives: dict[str, str]) -> list[str]:
        """Import ``ref -> archive`` that containerd does not hold yet; the refs imported."""
        have = self.images()
        done = []
        for ref, archive in archives.items():
            if ref in have:
                continue
            proc = self.ctr("images", "import", "--no-unpack=false", archive, timeout=600)
            if proc.returncode:
                raise ClusterError(f"ctr images import {archive} failed:\n{proc.stdout}{proc.stderr}")
            done.append(ref)
        return done

    # ---- lifecycle ---------------------------------------------------------------------------
    def _owner(self) -> dict | None:
        try:
            return json.loads(OWNER_FILE.read_text())
        except (OSError, ValueError):
            return None

    def _refuse_foreign_cluster(self) -> None:
        owner = self._owner()
        if not owner or owner.get("root") == str(self.layout.root):
            return
        other = LocalCluster(Layout(Path(owner["root"])))
        if any(other.pid(n) for n in DAEMONS):
            raise ClusterError(
                f"another stepflow test cluster runs on this machine, from {owner['root']} "
                f"(KUBECONFIG={owner['root']}/kubeconfig). One per machine: use it, or stop it with "
                f"STEPFLOW_CLUSTER_DIR={owner['root']} scripts/testenv cluster down")
        other.down()  # dead: its leftovers would break this one

    def _refuse_busy_ports(self) -> None:
        busy = []
        # The gateway only when it is ours already: elsewhere a connect would leave the machine.
        addresses = ["127.0.0.1"] + ([GATEWAY] if host.address_owner(GATEWAY) else [])
        for name, port in PORTS.items():
            for address in addresses:
                with socket.socket() as s:
                    s.settimeout(0.2)
                    if s.connect_ex((address, port)) == 0:
                        busy.append(f"{address}:{port} ({name})")
        if busy:
            raise ClusterError(f"ports the test cluster needs are taken by another process: {', '.join(busy)}; "
                               "see `ss -ltnp` (a cluster of another checkout? `scripts/testenv cluster status`)")

    def up(self, images: dict[str, dict], timeout: float = 180) -> LocalCluster:
        """Start the cluster unless it is healthy; import the images either way.

        ``images`` is scripts/testenv-images' manifest: name -> {"ref", "archive"}; "pause"
        is required (the sandbox image)."""
        t0 = time.monotonic()
        archives = {i["ref"]: i["archive"] for i in images.values() if "archive" in i}
        self._refuse_foreign_cluster()
        if self.healthy():
            self.import_images(archives)
            return self
        if any(self.pid(n) for n in DAEMONS) or self.layout.run.exists():
            self.down()  # half a cluster, or one killed without `down`: start from nothing
        self._refuse_busy_ports()
        self.started_here = True
        try:
            self._start_all(images["pause"]["ref"], archives, timeout)
        except BaseException:
            self.down()
            raise
        self.up_seconds = time.monotonic() - t0
        return self

    def _start_all(self, pause_ref: str, archives: dict[str, str], timeout: float) -> None:
        lay = self.layout
        OWNER_FILE.write_text(json.dumps({"root": str(lay.root), "pid": os.getpid()}))
        host.record_sysctls(lay)
        host.ensure_bridge()
        token = ensure_pki(lay.pki)
        configs.write_all(lay, token, pause_ref)
        for d in ("etcd", "kubelet", "pod-logs", "runc"):
            (lay.state / d).mkdir(parents=True, exist_ok=True)
        p = lay.pki

        self._start("containerd", ["containerd", "--config", lay.conf / "containerd.toml"])
        _wait(lambda: self.ctr("version").returncode == 0, 30, "containerd",
              check=self._alive_or_raise("containerd"))
        self.import_images(archives)

        peer = f"http://127.0.0.1:{PORTS['etcd-peer']}"
        self._start("etcd", [
            bin_path("etcd"), "--name", "stepflow", "--data-dir", lay.state / "etcd",
            "--listen-client-urls", f"http://127.0.0.1:{PORTS['etcd']}",
            "--advertise-client-urls", f"http://127.0.0.1:{PORTS['etcd']}",
            "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
            "--initial-cluster", f"stepflow={peer}",
            "--listen-metrics-urls", f"http://127.0.0.1:{PORTS['etcd-metrics']}",
            "--unsafe-no-fsync", "--log-level", "warn"])
        self._start("kube-apiserver", [
            bin_path("kube-apiserver"), f"--etcd-servers=http://127.0.0.1:{PORTS['etcd']}",
            f"--bind-address={GATEWAY}", f"--advertise-address={GATEWAY}", f"--secure-port={PORTS['apiserver']}",
            # No kube-proxy: the `kubernetes` Service would lead nowhere; pods are given the
            # gateway address directly (KUBERNETES_SERVICE_HOST/PORT, see docs/TESTING.md).
            "--endpoint-reconciler-type=none",
            f"--cert-dir={p}", f"--tls-cert-file={p / 'apiserver.crt'}",
            f"--tls-private-key-file={p / 'apiserver.key'}", f"--client-ca-file={p / 'ca.crt'}",
            f"--token-auth-file={p / 'tokens.csv'}", "--authorization-mode=Node,RBAC",
            "--service-account-issuer=https://kubernetes.default.svc",
            f"--service-account-key-file={p / 'sa.pub'}", f"--service-account-signing-key-file={p / 'sa.key'}",
            f"--service-cluster-ip-range={SERVICE_CIDR}", "--allow-privileged=true",
            "--kubelet-preferred-address-types=Hostname,InternalIP",
            f"--kubelet-client-certificate={p / 'kubelet-client.crt'}",
            f"--kubelet-client-key={p / 'kubelet-client.key'}"])
        _wait(lambda: self._get("/readyz")[0] == 200, timeout, "kube-apiserver /readyz",
              check=self._alive_or_raise("etcd", "kube-apiserver"))

        kubeconfig = lay.kubeconfig
        self._start("kube-controller-manager", [
            bin_path("kube-controller-manager"), f"--kubeconfig={kubeconfig}", "--bind-address=127.0.0.1",
            f"--secure-port={PORTS['controller-manager']}", "--leader-elect=false",
            f"--service-account-private-key-file={p / 'sa.key'}", f"--root-ca-file={p / 'ca.crt'}",
            "--use-service-account-credentials=false", "--controllers=*,-node-ipam-controller"])
        self._start("kube-scheduler", [
            bin_path("kube-scheduler"), f"--kubeconfig={kubeconfig}", "--bind-address=127.0.0.1",
            f"--secure-port={PORTS['scheduler']}", "--leader-elect=false"])
        # Node name "localhost": the API server reaches the kubelet (logs, exec) by that
        # Hostname address; a loopback --node-ip is refused ("nodeIP can't be loopback").
        self._start("kubelet", [
            bin_path("kubelet"), f"--config={lay.conf / 'kubelet.json'}", f"--kubeconfig={kubeconfig}",
            f"--root-dir={lay.state / 'kubelet'}", f"--cert-dir={lay.state / 'kubelet' / 'pki'}",
            f"--hostname-override={NODE_NAME}"])
        alive = self._alive_or_raise(*DAEMONS)
        _wait(self._node_ready, timeout, f"node {NODE_NAME} Ready", check=alive)
        # Pods are refused until the ServiceAccount controller made "default" and the root
        # CA publisher the kube-root-ca.crt ConfigMap.
        _wait(lambda: self._get("/api/v1/namespaces/default/serviceaccounts/default")[0] == 200, 60,
              "the default ServiceAccount", check=alive)
        _wait(lambda: self._get("/api/v1/namespaces/default/configmaps/kube-root-ca.crt")[0] == 200, 60,
              "the kube-root-ca.crt ConfigMap", check=alive)

    def down(self) -> list[str]:
        """Stop everything and undo the host changes; returns the sysctls restored."""
        lay = self.layout
        for name in reversed(DAEMONS[1:]):
            self._stop(name)
        host.kill_containers(lay)
        self._stop("containerd")
        host.unmount_all(lay)
        host.remove_cgroups()
        host.remove_network()
        other_containerd = any(p for p in _pids_named("containerd"))
        host.remove_hard_coded_dirs(other_containerd)
        restored = host.restore_sysctls(lay)
        shutil.rmtree(lay.state, ignore_errors=True)
        shutil.rmtree(lay.run, ignore_errors=True)
        lay.kubeconfig.unlink(missing_ok=True)
        owner = self._owner()
        if owner and owner.get("root") == str(lay.root):
            OWNER_FILE.unlink(missing_ok=True)
        return restored

    # ---- looking at it -------------------------------------------------------------------------
    def status(self) -> dict:
        daemons = {n: self.pid(n) for n in DAEMONS}
        return {"root": str(self.layout.root), "daemons": daemons, "healthy": self.healthy(),
                "kubeconfig": self.kubeconfig if self.layout.kubeconfig.exists() else None,
                "leftovers": [] if any(daemons.values()) else host.leftovers(self.layout)}

    def tail(self, name: str, n: int = 40) -> str:
        path = self.layout.logs / f"{name}.log"
        try:
            with open(path, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - 256 * 1024))
                lines = f.read().decode(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(lines[-n:])

    def logs_tail(self, n: int = 40) -> str:
        """The kubelet's and containerd's logs and every pod's containers' logs (tails)."""
        parts = [f"--- {name} ({self.layout.logs / (name + '.log')}) ---\n{self.tail(name, n)}"
                 for name in ("kubelet", "containerd")]
        pod_logs = self.layout.state / "pod-logs"
        if pod_logs.is_dir():
            for f in sorted(pod_logs.rglob("*.log")):
                lines = f.read_text(errors="replace").splitlines()[-n:]
                parts.append(f"--- pod log {f.relative_to(pod_logs)} ---\n" + "\n".join(lines))
        return "\n".join(parts)


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def _pids_named(name: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if Path(f"/proc/{entry}/comm").read_text().strip() == name:
                    found.append(int(entry))
            except OSError:
                continue
    return found
