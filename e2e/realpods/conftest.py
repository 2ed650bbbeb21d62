"""The kind suite's fixtures, re-bound to the local single-node cluster that runs real pods
(tests/testenv/localcluster, ``scripts/testenv cluster``): same fixture names, so the kind
suite's scenarios run here unchanged (see test_gitops.py, test_security.py), plus what only
this cluster has so far (test_restart.py, test_cluster_images.py).

Differences from kind, and why:

* The operator image is not built by Docker: ``scripts/testenv images`` made it from
  operator/Dockerfile's recipe and the cluster imported it (pull policy ``Never``).
* No kube-proxy and no cluster DNS: the operator is told where the API server is
  (``KUBERNETES_SERVICE_HOST/PORT`` = the bridge gateway, through the chart's
  ``operator.extraEnv``), and Pipelines name the in-cluster git server by its pod IP.
* Host-side servers a pod must reach (the S3 server of test_restart.py) listen on the
  gateway address, never on a public interface.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from tests.testenv.binaries import bin_path
from tests.testenv.plugin import (  # noqa: F401 - the fixture, the log hook, the timings line
    local_cluster,
    pytest_runtest_makereport,
    pytest_terminal_summary,
)

from e2e.cluster import Cluster, Release, Tools
from e2e.gitrepo import Repo, kubectl_push
from e2e.realpods.release import git_pod_url, install_release, uninstall_release


@pytest.fixture(scope="session")
def cluster(local_cluster) -> Cluster:  # noqa: F811
    tools = Tools(docker="", kind="", kubectl=bin_path("kubectl"), helm=bin_path("helm"))
    return Cluster(tools, "stepflow-local", Path(local_cluster.kubeconfig), owned=False)


@pytest.fixture(scope="session")
def cluster_images() -> dict:
    """scripts/testenv images for this tree (name -> ref, archive), without a cluster."""
    from tests.testenv import unavailable
    from tests.testenv.localcluster.session import build_images

    if os.geteuid() != 0:
        unavailable("building the cluster's images needs root (debootstrap, overlay mount, chroot)")
    return build_images()


@pytest.fixture(scope="session")
def image(local_cluster) -> str:  # noqa: F811
    """The operator image of this tree, already imported into the cluster's containerd."""
    return local_cluster.images["operator"]["ref"]


@pytest.fixture(scope="session")
def runner(local_cluster) -> str:  # noqa: F811
    """The stepflow runner image of this tree (what step Jobs run), imported into the cluster."""
    return local_cluster.images["runner"]["ref"]


@pytest.fixture(scope="session")
def pod_s3(local_cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:  # noqa: F811
    """versitygw listening on the bridge gateway: reachable from pods and from here."""
    from tests.testenv.s3 import S3Server

    server = S3Server(tmp_path_factory.mktemp("pod-s3"), host=local_cluster.gateway).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def operator(cluster: Cluster, image: str, namespace: str) -> Iterator[Release]:
    """The chart from charts/stepflow with this tree's image, watching ``namespace`` only."""
    release = install_release(cluster, image, namespace)
    try:
        yield release
    finally:
        uninstall_release(cluster, release)


@pytest.fixture
def repo(cluster: Cluster, git_server: str, tmp_path: Path) -> Callable[[str], Repo]:
    """``repo(name)``: a new repository on the in-cluster server, committed to from here."""
    push = kubectl_push(cluster.kubectl, git_server)
    base = git_pod_url(cluster, git_server)

    def make(name: str) -> Repo:
        unique = f"{name}-{secrets.token_hex(3)}"
        return Repo(unique, f"{base}/{unique}.git", push, tmp_path)

    return make
