"""A real Kubernetes control plane for tests: etcd + kube-apiserver, no kubelet.

The same shape as controller-runtime's envtest: etcd and kube-apiserver on free loopback
ports, certificates and service-account keys generated per session, authorization RBAC,
the ServiceAccount admission plugin off (no controller-manager mints tokens). Admin access
is a client certificate in group ``system:masters`` (also a static bearer token, ``.token``).
Pods never run: there is no kubelet and no scheduler; objects are stored and served.
"""

from __future__ import annotations

import base64
import http.client
import os
import secrets
import ssl
import subprocess
import time
from pathlib import Path
from typing import Any

import yaml

from .binaries import REPO_ROOT, bin_dir, bin_path
from .procs import ServerFailed, ServerProcess, free_port, wait_for

CRDS_DIR = REPO_ROOT / "crds"
ADMIN_USER = "stepflow-admin"
SERVICE_CIDR = "10.0.0.0/24"


class KubectlError(subprocess.CalledProcessError):
    def __str__(self) -> str:
        return (
            f"kubectl {' '.join(map(str, self.cmd[3:]))} exited {self.returncode}\n"
            f"stdout: {self.stdout}\nstderr: {self.stderr}"
        )


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def generate_pki(d: Path) -> None:
    """CA, apiserver serving cert, admin client cert, service-account key pair (EC P-256)."""
    d.mkdir(parents=True, exist_ok=True)
    for key in ("ca", "server", "admin", "sa"):
        _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
                 "-out", f"{key}.key", cwd=d)
    _openssl("ec", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=d)
    _openssl("req", "-x509", "-new", "-key", "ca.key", "-subj", "/CN=stepflow-test-ca",
             "-days", "3650", "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", "-out", "ca.crt", cwd=d)
    leaves = {
        "server": ("/CN=kube-apiserver",
                   "subjectAltName=IP:127.0.0.1,DNS:localhost,IP:10.0.0.1,"
                   "DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc\n"
                   "extendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature\n"),
        "admin": (f"/O=system:masters/CN={ADMIN_USER}",
                  "extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature\n"),
    }
    for name, (subj, ext) in leaves.items():
        (d / f"{name}.ext").write_text(ext)
        _openssl("req", "-new", "-key", f"{name}.key", "-subj", subj, "-out", f"{name}.csr", cwd=d)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                 "-set_serial", str(secrets.randbits(63)), "-days", "3650",
                 "-extfile", f"{name}.ext", "-out", f"{name}.crt", cwd=d)


class Kube:
    """The ``kube`` fixture: a running etcd + kube-apiserver and ways to talk to it.

    Attributes: ``kubeconfig`` (path), ``server`` (https URL), ``api_client``
    (kubernetes.client.ApiClient), ``env`` (KUBECONFIG and PATH for child processes),
    ``token`` (admin bearer token), ``ca_file``, ``workdir``, ``ready_seconds``.
    """

    def __init__(self, workdir: Path) -> None:
        self.workdir = Path(workdir)
        self.pki = self.workdir / "pki"
        self.logs = self.workdir / "logs"
        self.kubeconfig = str(self.workdir / "kubeconfig")
        self.ca_file = str(self.pki / "ca.crt")
        self.token = secrets.token_hex(16)
        self.server = ""
        self.etcd: ServerProcess | None = None
        self.apiserver: ServerProcess | None = None
        self.ready_seconds: float | None = None
        self._api_client: Any = None
        self.kubectl_path = bin_path("kubectl")
        self._apiserver_bin = bin_path("kube-apiserver")
        self._etcd_bin = bin_path("etcd")

    # ---- lifecycle -------------------------------------------------------------------
    def start(self, timeout: float = 60.0, attempts: int = 3) -> Kube:
        """Start etcd and kube-apiserver, wait for /readyz, write the kubeconfig.

        CRDs are not applied here: the ``kube`` fixture calls ``apply_crds()`` next.
        """
        t0 = time.monotonic()
        generate_pki(self.pki)
        (self.workdir / "tokens.csv").write_text(
            f'{self.token},{ADMIN_USER},{ADMIN_USER},"system:masters"\n'
        )
        for attempt in range(1, attempts + 1):
            try:
                self._start_once(attempt, timeout)
                break
            except ServerFailed:
                conflict = any(p and p.port_conflict() for p in (self.etcd, self.apiserver))
                self._stop_processes()
                if not conflict or attempt == attempts:
                    raise
        self._write_kubeconfig()
        self.ready_seconds = time.monotonic() - t0
        return self

    def _start_once(self, attempt: int, timeout: float) -> None:
        client_port, peer_port, api_port = free_port(), free_port(), free_port()
        data = self.workdir / f"etcd-data-{attempt}"
        self.etcd = ServerProcess(
            "etcd",
            [
                self._etcd_bin, "--name", "stepflow-test", "--data-dir", data,
                "--listen-client-urls", f"http://127.0.0.1:{client_port}",
                "--advertise-client-urls", f"http://127.0.0.1:{client_port}",
                "--listen-peer-urls", f"http://127.0.0.1:{peer_port}",
                "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer_port}",
                "--initial-cluster", f"stepflow-test=http://127.0.0.1:{peer_port}",
                "--unsafe-no-fsync", "--quota-backend-bytes", str(4 << 30),
                "--log-level", "warn",
            ],
            self.logs / "etcd.log",
        ).start()
        self.server = f"https://127.0.0.1:{api_port}"
        p = self.pki
        self.apiserver = ServerProcess(
            "kube-apiserver",
            [
                self._apiserver_bin,
                f"--etcd-servers=http://127.0.0.1:{client_port}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={api_port}",
                f"--cert-dir={p}",
                f"--tls-cert-file={p / 'server.crt'}",
                f"--tls-private-key-file={p / 'server.key'}",
                f"--client-ca-file={p / 'ca.crt'}",
                f"--token-auth-file={self.workdir / 'tokens.csv'}",
                f"--service-account-issuer={self.server}",
                f"--service-account-key-file={p / 'sa.pub'}",
                f"--service-account-signing-key-file={p / 'sa.key'}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--authorization-mode=RBAC",
                "--disable-admission-plugins=ServiceAccount",
                "--allow-privileged=true",
                "--endpoint-reconciler-type=none",
            ],
            self.logs / "kube-apiserver.log",
        ).start()

        def ready() -> bool:
            self.etcd.ensure_running()  # type: ignore[union-attr]
            self.apiserver.ensure_running()  # type: ignore[union-attr]
            status, body = self._get("/readyz")
            return status == 200 and body.strip() == b"ok"

        try:
            wait_for(ready, timeout, 0.1, f"kube-apiserver {self.server}/readyz",
                     ignore=(OSError, http.client.HTTPException))
            # the "default" namespace is created by a controller just after /readyz
            wait_for(lambda: self._get("/api/v1/namespaces/default")[0] == 200, 15, 0.05,
                     "namespace default", ignore=(OSError, http.client.HTTPException))
        except TimeoutError as exc:
            raise ServerFailed(f"{exc}\n--- kube-apiserver log tail ---\n"
                               f"{self.apiserver.tail(30)}\n--- etcd log tail ---\n"
                               f"{self.etcd.tail(15)}") from exc

    def _ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.pki / "ca.crt"))
        ctx.load_cert_chain(str(self.pki / "admin.crt"), str(self.pki / "admin.key"))
        return ctx

    def _get(self, path: str) -> tuple[int, bytes]:
        port = int(self.server.rsplit(":", 1)[1])
        conn = http.client.HTTPSConnection("127.0.0.1", port, context=self._ssl_context(),
                                           timeout=2)
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    def _write_kubeconfig(self) -> None:
        def b64(name: str) -> str:
            return base64.b64encode((self.pki / name).read_bytes()).decode()

        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "stepflow-test", "cluster": {
                "server": self.server, "certificate-authority-data": b64("ca.crt")}}],
            "users": [{"name": ADMIN_USER, "user": {
                "client-certificate-data": b64("admin.crt"),
                "client-key-data": b64("admin.key")}}],
            "contexts": [{"name": "stepflow-test", "context": {
                "cluster": "stepflow-test", "user": ADMIN_USER, "namespace": "default"}}],
            "current-context": "stepflow-test",
        }
        path = Path(self.kubeconfig)
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        path.chmod(0o600)

    def _stop_processes(self) -> None:
        for proc in (self.apiserver, self.etcd):
            if proc is not None:
                proc.stop()

    def stop(self) -> None:
        if self._api_client is not None:
            try:
                self._api_client.close()
            except Exception:  # noqa: BLE001
                pass
            self._api_client = None
        self._stop_processes()

    # ---- the fixture API --------------------------------------------------------------
    @property
    def api_client(self):  # noqa: ANN201 - kubernetes.client.ApiClient
        if self._api_client is None:
            from kubernetes import config

            self._api_client = config.new_client_from_config(
                config_file=self.kubeconfig, persist_config=False)
        return self._api_client

    def new_api_client(self):  # noqa: ANN201
        """A separate ApiClient (its own connection pool), e.g. for another thread."""
        from kubernetes import config

        return config.new_client_from_config(config_file=self.kubeconfig, persist_config=False)

    @property
    def env(self) -> dict[str, str]:
        """Variables for child processes: KUBECONFIG, and PATH with kubectl and helm first."""
        path = os.pathsep.join([str(bin_dir("kubectl")), str(bin_dir("helm")),
                                os.environ.get("PATH", "")])
        return {"KUBECONFIG": self.kubeconfig, "PATH": path}

    def kubectl(self, *args: str, input: str | bytes | None = None,  # noqa: A002
                check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        """Run kubectl against this control plane; text in and out."""
        cmd = [self.kubectl_path, "--kubeconfig", self.kubeconfig, *map(str, args)]
        text = not isinstance(input, bytes)
        proc = subprocess.run(cmd, input=input, capture_output=True, text=text, timeout=timeout)
        if check and proc.returncode != 0:
            raise KubectlError(proc.returncode, cmd, proc.stdout, proc.stderr)
        return proc

    def crd_files(self) -> list[Path]:
        if not CRDS_DIR.is_dir():
            return []
        return sorted(p for p in CRDS_DIR.rglob("*") if p.suffix in (".yaml", ".yml")
                      and p.is_file())

    def apply_crds(self, timeout: float = 30) -> list[str]:
        """Server-side apply every YAML under crds/ and wait until each CRD is Established.

        Returns the names of the CRDs applied (empty when crds/ holds none).
        """
        files = self.crd_files()
        if not files:
            return []
        names: list[str] = []
        args: list[str] = []
        for f in files:
            for doc in yaml.safe_load_all(f.read_text()):
                if isinstance(doc, dict) and doc.get("kind") == "CustomResourceDefinition":
                    names.append(doc["metadata"]["name"])
            args += ["-f", str(f)]
        self.kubectl("apply", "--server-side", "--force-conflicts",
                     "--field-manager=stepflow-tests", *args)
        if names:
            self.kubectl("wait", "--for=condition=Established", f"--timeout={int(timeout)}s",
                         *[f"crd/{n}" for n in names], timeout=timeout + 10)
        return names

    def logs_tail(self, n: int = 40) -> str:
        parts = []
        for proc in (self.apiserver, self.etcd):
            if proc is not None:
                parts.append(f"--- {proc.name} ({proc.log_path}) ---\n{proc.tail(n)}")
        return "\n".join(parts)

    @property
    def processes(self) -> list[ServerProcess]:
        return [p for p in (self.apiserver, self.etcd) if p is not None]
