"""Where scripts/testenv puts the binaries (versions from scripts/testenv-go/versions.env)."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
VERSIONS_FILE = REPO_ROOT / "scripts" / "testenv-go" / "versions.env"
INSTALL_COMMAND = "scripts/testenv install"

# binary name -> (component, version key in versions.env)
_BINARIES = {
    "kube-apiserver": ("kube", "KUBE_VERSION"),
    "kubectl": ("kube", "KUBE_VERSION"),
    "etcd": ("etcd", "ETCD_VERSION"),
    "versitygw": ("versitygw", "VERSITYGW_VERSION"),
    "helm": ("helm", "HELM_VERSION"),
    # the real-pods cluster (scripts/testenv install cluster)
    "kubelet": ("kubenode", "KUBE_VERSION"),
    "kube-controller-manager": ("kubenode", "KUBE_VERSION"),
    "kube-scheduler": ("kubenode", "KUBE_VERSION"),
}


class BinaryMissing(FileNotFoundError):
    """A test-environment binary is not installed; the message names the install command."""


def cache_dir() -> Path:
    env = os.environ.get("STEPFLOW_TESTENV_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "stepflow" / "testenv"


def versions() -> dict[str, str]:
    out: dict[str, str] = {}
    for line in VERSIONS_FILE.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            out[key.strip()] = value.strip()
    return out


def version_of(name: str) -> str:
    return versions()[_BINARIES[name][1]]


def bin_dir(name: str) -> Path:
    """The cache directory that holds binary ``name`` (which may not be installed yet)."""
    if name not in _BINARIES:
        raise KeyError(f"unknown test binary {name!r}; known: {', '.join(sorted(_BINARIES))}")
    component, key = _BINARIES[name]
    return cache_dir() / f"{component}-{versions()[key]}" / "bin"


def bin_path(name: str) -> str:
    """Absolute path of an installed test binary; raises BinaryMissing naming the fix."""
    path = bin_dir(name) / name
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise BinaryMissing(
            f"{name} {version_of(name)} is not installed at {path}; "
            f"install the test environment with `{INSTALL_COMMAND}` (or `make testenv`) "
            "from the repository root"
        )
    return str(path)


#: prometheus-operator's CRDs that scripts/testenv installs (files, from its Go module's zip).
PROMETHEUS_CRDS = ("monitoring.coreos.com_servicemonitors.yaml", "monitoring.coreos.com_podmonitors.yaml")


def prometheus_crds() -> list[Path]:
    """The ServiceMonitor and PodMonitor CRD files; raises BinaryMissing naming the fix."""
    folder = cache_dir() / f"crds-{versions()['PROMETHEUS_OPERATOR_VERSION']}"
    paths = [folder / name for name in PROMETHEUS_CRDS]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise BinaryMissing(f"prometheus-operator's CRDs {', '.join(missing)} are not installed in {folder}; "
                            f"install the test environment with `{INSTALL_COMMAND}` from the repository root")
    return paths


def all_bin_dirs() -> list[str]:
    return sorted({str(bin_dir(n)) for n in _BINARIES})
