"""The kind suite's machinery: finding the tools, a kind cluster, the operator image, the Helm
release, and kubectl. The host reaches the cluster only through kind, kubectl and helm (the
API server's port that kind publishes on loopback): never a pod or node address.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

REPO = Path(__file__).resolve().parents[1]
CHART = REPO / "charts" / "stepflow"
DOCKERFILE = REPO / "operator" / "Dockerfile"
KIND_CONFIG = Path(__file__).resolve().with_name("kind.yaml")
#: The kind release the suite is written against (its default node image is Kubernetes 1.34).
KIND_VERSION = "v0.30.0"

INSTALL_HINTS = {
    "docker": "install Docker Engine (https://docs.docker.com/engine/install/) and start it",
    "kind": f"go install sigs.k8s.io/kind@{KIND_VERSION} (then put $(go env GOPATH)/bin on PATH)",
    "kubectl": "scripts/testenv install kube (pinned kubectl), or any kubectl >= 1.30 on PATH",
    "helm": "scripts/testenv install helm (pinned helm), or helm 3 on PATH",
}

T = TypeVar("T")


class CommandError(RuntimeError):
    """A command failed; the message carries its output, which is the useful part."""


def run(argv: list[str], *, input: bytes | str | None = None, env: Mapping[str, str] | None = None,  # noqa: A002
        timeout: float = 300, check: bool = True, cwd: Path | None = None) -> subprocess.CompletedProcess:
    text = not isinstance(input, bytes)
    proc = subprocess.run(argv, input=input, env=None if env is None else {**os.environ, **env},
                          capture_output=True, text=text, timeout=timeout, cwd=cwd, check=False)
    if check and proc.returncode != 0:
        out = proc.stdout if text else proc.stdout.decode(errors="replace")
        err = proc.stderr if text else proc.stderr.decode(errors="replace")
        raise CommandError(f"`{' '.join(argv)}` exited {proc.returncode}:\n{out}{err}")
    return proc


def wait_for(predicate: Callable[[], T], timeout: float, message: str, interval: float = 0.5) -> T:
    """Poll until ``predicate`` returns something truthy; a deadline, never a bare sleep."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g}s waiting for {message}")
        time.sleep(interval)


@dataclass(frozen=True)
class Tools:
    docker: str
    kind: str
    kubectl: str
    helm: str

    @classmethod
    def find(cls) -> tuple[Tools | None, str]:
        """The tools, or None and what to install (or start) to get them."""
        found: dict[str, str] = {}
        missing: list[str] = []
        for name in ("docker", "kind", "kubectl", "helm"):
            path = tool_path(name)
            if path:
                found[name] = path
            else:
                missing.append(f"{name}: {INSTALL_HINTS[name]}")
        if "docker" in found:
            proc = run([found["docker"], "info", "--format", "{{.ServerVersion}}"], check=False, timeout=30)
            if proc.returncode != 0:
                reason = (proc.stderr.strip().splitlines() or ["no answer"])[-1]
                missing.insert(0, f"a running Docker engine (`docker info`: {reason}): {INSTALL_HINTS['docker']}")
        if missing:
            return None, "the kind suite needs " + "; ".join(missing)
        return cls(**found), ""


def tool_path(name: str) -> str | None:
    """kubectl and helm at the versions the rest of the project tests with, when the test
    environment has built them; otherwise (and for docker and kind) the one on PATH."""
    if name in ("kubectl", "helm"):
        proc = run([str(REPO / "scripts" / "testenv"), "path", name], check=False, timeout=30)
        path = proc.stdout.strip()
        if proc.returncode == 0 and path and os.access(path, os.X_OK):
            return path
    return shutil.which(name)


@dataclass
class Cluster:
    """A kind cluster (made here, or an existing one named by ``STEPFLOW_E2E_CLUSTER``)."""

    tools: Tools
    name: str
    kubeconfig: Path
    owned: bool

    @classmethod
    def create(cls, tools: Tools, workdir: Path) -> Cluster:
        existing = os.environ.get("STEPFLOW_E2E_CLUSTER")
        kubeconfig = workdir / "kubeconfig"
        if existing:
            config = run([tools.kind, "get", "kubeconfig", "--name", existing]).stdout
            kubeconfig.write_text(config)
            return cls(tools, existing, kubeconfig, owned=False)
        name = f"stepflow-e2e-{secrets.token_hex(3)}"
        argv = [tools.kind, "create", "cluster", "--name", name, "--config", str(KIND_CONFIG),
                "--kubeconfig", str(kubeconfig), "--wait", "180s"]
        if os.environ.get("STEPFLOW_E2E_NODE_IMAGE"):
            argv += ["--image", os.environ["STEPFLOW_E2E_NODE_IMAGE"]]
        cluster = cls(tools, name, kubeconfig, owned=True)
        try:
            run(argv, timeout=600)
        except BaseException:
            cluster.delete()  # kind removes a failed node itself; a Ctrl-C may leave one
            raise
        return cluster

    def delete(self) -> None:
        if self.owned and not os.environ.get("STEPFLOW_E2E_KEEP"):
            run([self.tools.kind, "delete", "cluster", "--name", self.name, "--kubeconfig", str(self.kubeconfig)],
                check=False, timeout=300)

    def load_image(self, image: str) -> None:
        run([self.tools.kind, "load", "docker-image", image, "--name", self.name], timeout=600)

    def export_logs(self, directory: Path) -> None:
        run([self.tools.kind, "export", "logs", str(directory), "--name", self.name], check=False, timeout=300)

    def kubectl(self, *args: str, input: bytes | str | None = None, check: bool = True,  # noqa: A002
                timeout: float = 120) -> subprocess.CompletedProcess:
        return run([self.tools.kubectl, "--kubeconfig", str(self.kubeconfig), *args], input=input,
                   check=check, timeout=timeout)

    def get(self, namespace: str, kind: str, name: str | None = None, *, selector: str | None = None) -> Any:
        args = ["-n", namespace, "get", kind, *([name] if name else []), "-o", "json"]
        if selector:
            args += ["-l", selector]
        return json.loads(self.kubectl(*args).stdout)

    def apply(self, namespace: str, *objects: dict) -> None:
        self.kubectl("-n", namespace, "apply", "-f", "-",
                     input=json.dumps({"apiVersion": "v1", "kind": "List", "items": list(objects)}))

    def helm(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
        return run([self.tools.helm, "--kubeconfig", str(self.kubeconfig), *args], timeout=timeout)


def build_image(tools: Tools, tag: str) -> None:
    """``docker build -f operator/Dockerfile`` with the repository as the context."""
    run([tools.docker, "build", "-f", str(DOCKERFILE), "-t", tag, str(REPO)],
        env={"DOCKER_BUILDKIT": "1"}, timeout=1800)


@dataclass
class Release:
    """The chart installed in ``namespace``, watching ``watched`` only, with a file:// store on
    the operator's cache emptyDir and an integrity key from a Secret. Step pods could not
    reach that store, so steps run on backend ``local`` (inside the operator's pod)."""

    cluster: Cluster
    name: str
    namespace: str
    watched: str
    image: str
    store: str = "file:///var/cache/stepflow/store"

    def install(self) -> None:
        repository, _, tag = self.image.rpartition(":")
        key = secrets.token_hex(32)
        self.cluster.kubectl("create", "namespace", self.namespace)
        self.cluster.kubectl("-n", self.namespace, "create", "secret", "generic", "stepflow-signing",
                             f"--from-literal=key={key}")
        sets = {"image.repository": repository, "image.tag": tag, "image.pullPolicy": "Never",
                "operator.s3RootUri": self.store, "operator.integrityKeySecret": "stepflow-signing",
                "watchNamespaces": "{" + self.watched + "}", "operator.defaultBackend": "local"}
        argv = ["install", self.name, str(CHART), "--namespace", self.namespace, "--wait", "--timeout", "5m"]
        for path, value in sets.items():
            argv += ["--set", f"{path}={value}"]
        self.cluster.helm(*argv)

    def diagnostics(self) -> str:
        """Why an install did not become ready: the pods' descriptions and the operator's log."""
        pods = self.cluster.kubectl("-n", self.namespace, "describe", "pods", check=False).stdout
        logs = self.cluster.kubectl("-n", self.namespace, "logs", "--all-containers", "--tail=100",
                                    "-l", f"app.kubernetes.io/instance={self.name}", check=False)
        return f"--- pods ---\n{pods}\n--- logs ---\n{logs.stdout}{logs.stderr}"

    def uninstall(self) -> None:
        """Delete the watched namespace's stepflow objects while the operator still runs (it
        owns their finalizer: deleted later, they would hold the namespace Terminating for
        ever), then the release."""
        self.cluster.kubectl("-n", self.watched, "delete", "pipelines,pipelineexecutions,receivers", "--all",
                             "--ignore-not-found", "--timeout=120s", timeout=150, check=False)
        run([self.cluster.tools.helm, "--kubeconfig", str(self.cluster.kubeconfig), "uninstall", self.name,
             "--namespace", self.namespace, "--wait", "--timeout", "2m"], check=False, timeout=180)

    @property
    def deployment(self) -> dict:
        items = self.cluster.get(self.namespace, "deployments",
                                 selector=f"app.kubernetes.io/instance={self.name}")["items"]
        assert len(items) == 1, [d["metadata"]["name"] for d in items]
        return items[0]

    @property
    def service_account(self) -> str:
        return self.deployment["spec"]["template"]["spec"]["serviceAccountName"]

    def exec(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess:
        """Run a command in the operator's container (as its uid, with its capabilities)."""
        name = self.deployment["metadata"]["name"]
        return self.cluster.kubectl("-n", self.namespace, "exec", f"deployment/{name}", "-c", "operator",
                                    "--", *argv, check=check)

    def logs(self, tail: int = 200) -> str:
        name = self.deployment["metadata"]["name"]
        proc = self.cluster.kubectl("-n", self.namespace, "logs", f"deployment/{name}", "-c", "operator",
                                    f"--tail={tail}", check=False)
        return proc.stdout + proc.stderr
