"""Git repositories for the kind suite: commits are made on the host, in a work clone, and
arrive at the in-cluster git server (:mod:`e2e.gitserver`) as bundles through a ``push``
callable: ``kubectl exec -i`` into the server's pod in the cluster, a local process in the
loopback test of the server itself.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path

SERVER_SCRIPT = Path(__file__).resolve().with_name("gitserver.py")
SERVER_NAME = "gitserver"
SERVER_PORT = 8080

#: A fixed identity and no user or system configuration: commits do not depend on the host.
GIT_ENV = {
    "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull, "GIT_TERMINAL_PROMPT": "0",
    "GIT_AUTHOR_NAME": "stepflow e2e", "GIT_AUTHOR_EMAIL": "e2e@stepflow.invalid",
    "GIT_COMMITTER_NAME": "stepflow e2e", "GIT_COMMITTER_EMAIL": "e2e@stepflow.invalid",
}

Push = Callable[[str, bytes], None]
"""``push(repo, bundle)``: make the served repository ``repo``'s branches the bundle's."""


def git(*args: str, cwd: Path) -> str:
    proc = subprocess.run(["git", *args], cwd=cwd, env={**os.environ, **GIT_ENV}, capture_output=True,
                          text=True, timeout=120, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed in {cwd}:\n{proc.stdout}{proc.stderr}")
    return proc.stdout.strip()


class Repo:
    """One served repository, branch ``main``; ``url`` is how the operator reaches it."""

    def __init__(self, name: str, url: str, push: Push, workdir: Path) -> None:
        self.name, self.url, self._push = name, url, push
        self.work = workdir / name
        self.work.mkdir(parents=True)
        git("init", "--quiet", "--initial-branch=main", cwd=self.work)

    def commit(self, files: Mapping[str, str | None], message: str) -> str:
        """Write (or, for None, delete) ``files``, commit, push; the new commit's SHA."""
        for path, text in files.items():
            target = self.work / path
            if text is None:
                target.unlink()
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(text)
        git("add", "--all", cwd=self.work)
        git("commit", "--quiet", "--allow-empty", "-m", message, cwd=self.work)
        with tempfile.TemporaryDirectory() as tmp:
            bundle = Path(tmp) / "push.bundle"
            git("bundle", "create", "--quiet", str(bundle), "main", cwd=self.work)
            self._push(self.name, bundle.read_bytes())
        return git("rev-parse", "HEAD", cwd=self.work)


def server_manifests(image: str) -> list[dict]:
    """The in-cluster git server: the script in a ConfigMap, a pod of the operator image
    (it has git and Python) running it as the image's non-root user, and a Service."""
    labels = {"app.kubernetes.io/name": SERVER_NAME, "app.kubernetes.io/part-of": "stepflow-e2e"}
    return [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": SERVER_NAME, "labels": labels},
         "data": {"gitserver.py": SERVER_SCRIPT.read_text()}},
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": SERVER_NAME, "labels": labels},
         "spec": {
             "containers": [{
                 "name": "git",
                 "image": image,
                 "imagePullPolicy": "Never",
                 "command": ["python", "/opt/gitserver/gitserver.py", "serve", "--root", "/srv/git",
                             "--port", str(SERVER_PORT)],
                 "env": [{"name": "HOME", "value": "/tmp"}],
                 "ports": [{"containerPort": SERVER_PORT, "name": "http"}],
                 "readinessProbe": {"tcpSocket": {"port": SERVER_PORT}, "periodSeconds": 1},
                 "securityContext": {"runAsNonRoot": True, "allowPrivilegeEscalation": False,
                                     "capabilities": {"drop": ["ALL"]}},
                 "volumeMounts": [{"name": "script", "mountPath": "/opt/gitserver", "readOnly": True},
                                  {"name": "repos", "mountPath": "/srv/git"}],
             }],
             "volumes": [{"name": "script", "configMap": {"name": SERVER_NAME}},
                         {"name": "repos", "emptyDir": {}}],
         }},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": SERVER_NAME, "labels": labels},
         "spec": {"selector": labels, "ports": [{"name": "http", "port": 80, "targetPort": SERVER_PORT}]}},
    ]


def server_url(namespace: str, repo: str) -> str:
    return f"http://{SERVER_NAME}.{namespace}.svc.cluster.local/{repo}.git"


def kubectl_push(kubectl: Callable[..., object], namespace: str) -> Push:
    """A push through ``kubectl exec -i`` into the server's pod."""
    def push(repo: str, bundle: bytes) -> None:
        kubectl("-n", namespace, "exec", "-i", SERVER_NAME, "-c", "git", "--", "python",
                "/opt/gitserver/gitserver.py", "push", "--root", "/srv/git", "--repo", repo, input=bundle)
    return push
