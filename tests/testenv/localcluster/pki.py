"""Certificates and keys of the local cluster, made once per state directory with openssl.

A CA; the API server's serving certificate (valid for the bridge gateway, where pods reach
it, and for loopback); the client certificate the API server shows the kubelet (group
system:masters, so ``kubectl logs/exec`` work); the service-account signing key; and a
static admin bearer token.
"""

from __future__ import annotations

import secrets
import subprocess
from pathlib import Path

from .layout import GATEWAY, SERVICE_CIDR

FILES = ("ca.crt", "ca.key", "apiserver.crt", "apiserver.key", "kubelet-client.crt",
         "kubelet-client.key", "sa.key", "sa.pub", "admin.token")


def _openssl(d: Path, *args: str) -> None:
    subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)


def _service_ip() -> str:
    net = SERVICE_CIDR.split("/")[0].rsplit(".", 1)[0]
    return f"{net}.1"


def ensure_pki(d: Path) -> str:
    """Create what is missing under ``d``; return the admin token."""
    if all((d / f).exists() for f in FILES):
        return (d / "admin.token").read_text().strip()
    d.mkdir(parents=True, exist_ok=True)
    for key in ("ca", "apiserver", "kubelet-client", "sa"):
        _openssl(d, "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", f"{key}.key")
    _openssl(d, "ec", "-in", "sa.key", "-pubout", "-out", "sa.pub")
    _openssl(d, "req", "-x509", "-new", "-key", "ca.key", "-subj", "/CN=stepflow-cluster-ca", "-days", "3650",
             "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
             "-out", "ca.crt")
    leaves = {
        "apiserver": ("/CN=kube-apiserver",
                      f"subjectAltName=IP:{GATEWAY},IP:127.0.0.1,IP:{_service_ip()},DNS:localhost,"
                      "DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,"
                      "DNS:kubernetes.default.svc.cluster.local\n"
                      "extendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature\n"),
        "kubelet-client": ("/O=system:masters/CN=kube-apiserver-kubelet-client",
                           "extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature\n"),
    }
    for name, (subject, ext) in leaves.items():
        (d / f"{name}.ext").write_text(ext)
        _openssl(d, "req", "-new", "-key", f"{name}.key", "-subj", subject, "-out", f"{name}.csr")
        _openssl(d, "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                 "-set_serial", str(secrets.randbits(63)), "-days", "3650", "-extfile", f"{name}.ext",
                 "-out", f"{name}.crt")
    token = secrets.token_hex(24)
    (d / "tokens.csv").write_text(f'{token},stepflow-admin,stepflow-admin,"system:masters"\n')
    (d / "admin.token").write_text(token + "\n")
    for f in d.iterdir():
        f.chmod(0o600)
    return token
