"""Fixtures of the kind suite: one kind cluster per session with the operator image built
from this tree, the chart installed from charts/stepflow, and a git server in the cluster.

Without docker (and a running engine), kind, kubectl or helm every cluster test is skipped
with a message naming what to install; with ``CI`` set that is a failure instead, so a
Docker-equipped CI running ``make e2e`` cannot pass by skipping. Knobs:

* ``STEPFLOW_E2E_CLUSTER=NAME``: use this existing kind cluster (it is not deleted);
* ``STEPFLOW_E2E_IMAGE=REPO:TAG``: use this local image instead of building one;
* ``STEPFLOW_E2E_NODE_IMAGE=kindest/node:...``: the node image for a new cluster;
* ``STEPFLOW_E2E_KEEP=1``: keep the cluster this session created, to look around after.
"""

from __future__ import annotations

import os
import secrets
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from e2e.cluster import Cluster, CommandError, Release, Tools, build_image, run
from e2e.gitrepo import Repo, kubectl_push, server_manifests, server_url

#: Per test, session fixtures included: the first test also builds the image and the cluster.
E2E_TIMEOUT = 1800


def pytest_configure(config: pytest.Config) -> None:
    # SIGTERM (a CI runner giving up) unwinds like Ctrl-C, so the cluster is deleted.
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        def interrupt(signum: int, frame: object) -> None:
            raise KeyboardInterrupt(f"signal {signum}")
        signal.signal(signal.SIGTERM, interrupt)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "cluster" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.timeout(E2E_TIMEOUT))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    """A failed test's report carries the operator's log: most failures are explained there."""
    outcome = yield
    report = outcome.get_result()
    release = getattr(item, "funcargs", {}).get("operator")
    if report.failed and isinstance(release, Release):
        try:
            report.sections.append(("e2e: operator log (tail)", release.logs(200)))
        except Exception as exc:  # noqa: BLE001 - the report must not hide the test's failure
            report.sections.append(("e2e: operator log", f"unavailable: {exc}"))


@pytest.fixture(scope="session")
def tools() -> Tools:
    found, problem = Tools.find()
    if found is None:
        if os.environ.get("CI"):
            pytest.fail(problem, pytrace=False)
        pytest.skip(problem)
    return found


@pytest.fixture(scope="session")
def cluster(tools: Tools, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    made = Cluster.create(tools, tmp_path_factory.mktemp("kind"))
    try:
        yield made
    finally:
        made.delete()


@pytest.fixture(scope="session")
def image(tools: Tools, cluster: Cluster) -> Iterator[str]:
    """The operator image, built from this tree and loaded into the cluster's node."""
    given = os.environ.get("STEPFLOW_E2E_IMAGE")
    tag = given or f"stepflow-operator:e2e-{secrets.token_hex(3)}"
    if not given:
        build_image(tools, tag)
    try:
        cluster.load_image(tag)
        yield tag
    finally:
        if not given:
            run([tools.docker, "image", "rm", "--force", tag], check=False, timeout=120)


@pytest.fixture(scope="session")
def namespace(cluster: Cluster) -> Iterator[str]:
    """The namespace the operator watches; every test's Pipelines live here."""
    name = f"e2e-{secrets.token_hex(3)}"
    cluster.kubectl("create", "namespace", name)
    try:
        yield name
    finally:
        cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture(scope="session")
def operator(cluster: Cluster, image: str, namespace: str,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[Release]:
    """``helm install`` of charts/stepflow with the image, watching ``namespace`` only."""
    release = Release(cluster, name=f"stepflow-{secrets.token_hex(3)}", namespace=f"{namespace}-system",
                      watched=namespace, image=image)
    try:
        release.install()
    except CommandError as exc:
        logs_dir = tmp_path_factory.mktemp("kind-logs")
        cluster.export_logs(logs_dir)
        raise CommandError(f"{exc}\n{release.diagnostics()}\n(kind's node logs: {logs_dir})") from None
    try:
        yield release
    finally:
        release.uninstall()
        cluster.kubectl("delete", "namespace", release.namespace, "--wait=false", check=False)


@pytest.fixture(scope="session")
def git_server(cluster: Cluster, image: str, namespace: str) -> str:
    """The in-cluster git server (e2e/gitserver.py in a pod of the operator image)."""
    cluster.apply(namespace, *server_manifests(image))
    cluster.kubectl("-n", namespace, "wait", "--for=condition=Ready", "pod/gitserver", "--timeout=180s",
                    timeout=200)
    return namespace


@pytest.fixture
def repo(cluster: Cluster, git_server: str, tmp_path: Path) -> Callable[[str], Repo]:
    """``repo(name)``: a new repository on the in-cluster server, committed to from here."""
    push = kubectl_push(cluster.kubectl, git_server)

    def make(name: str) -> Repo:
        unique = f"{name}-{secrets.token_hex(3)}"
        return Repo(unique, server_url(git_server, unique), push, tmp_path)

    return make
