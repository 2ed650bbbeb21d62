"""pytest plugin: fixtures that start real servers, and the hooks around them.

Loaded by tests/conftest.py. Fixtures: ``kube`` (session), ``s3_server`` (session), ``s3``
(a fresh bucket per test), ``moto_server`` (session) and ``moto`` (an empty account, boto3
configured for it), ``git_server`` (session), ``git_remote`` (a bare repo per test),
``local_cluster`` (session: a single-node Kubernetes that runs real pods).
When a test fails, the tail of the logs of the servers it used is added to its report.
With ``CI`` set, a missing binary or a server that does not start fails the test instead
of skipping it.
"""

from __future__ import annotations

import re
import secrets
import shutil
import subprocess
import warnings
from collections.abc import Iterator

import pytest

from . import INSTALL_COMMAND, require_binary, unavailable
from .procs import ServerFailed, install_signal_handlers, stop_all

# fixture name -> started server object (has logs_tail()); read by the report hook
_STARTED: dict[str, object] = {}
_TIMINGS: dict[str, float] = {}


def _start_failed(what: str, exc: BaseException) -> None:
    unavailable(
        f"{what} did not start: {exc}\n"
        f"check the installation with `scripts/testenv status`; install with `{INSTALL_COMMAND}`"
    )


@pytest.fixture(scope="session")
def kube(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """etcd + kube-apiserver (RBAC) with every CRD under crds/ applied and Established."""
    for name in ("kube-apiserver", "kubectl", "etcd"):
        require_binary(name)
    if shutil.which("openssl") is None:
        unavailable(f"openssl is not installed (needed for the test PKI); run `{INSTALL_COMMAND}`")
    from .kube import Kube

    k = Kube(tmp_path_factory.mktemp("kube"))
    _STARTED["kube"] = k
    try:
        k.start()
    except (ServerFailed, TimeoutError, OSError, subprocess.CalledProcessError) as exc:
        k.stop()
        _start_failed("the Kubernetes control plane (etcd + kube-apiserver)", exc)
    _TIMINGS["kube control plane ready"] = k.ready_seconds or 0.0
    try:
        # crds/ belongs to the project: a broken CRD is a test failure, never a skip
        k.apply_crds()
        yield k
    finally:
        k.stop()


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """versitygw (posix backend) on a free loopback port."""
    require_binary("versitygw")
    from .s3 import S3Server

    server = S3Server(tmp_path_factory.mktemp("s3"))
    _STARTED["s3_server"] = server
    try:
        server.start()
    except (ServerFailed, TimeoutError, OSError) as exc:
        server.stop()
        _start_failed("the S3 server (versitygw)", exc)
    _TIMINGS["S3 server ready"] = server.ready_seconds or 0.0
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3(s3_server, request: pytest.FixtureRequest) -> Iterator[object]:
    """A fresh, empty bucket on the session's S3 server (deleted after the test)."""
    bucket = s3_server.new_bucket(request.node.name)
    yield bucket
    try:
        s3_server.delete_bucket(bucket.bucket)
    except Exception as exc:  # noqa: BLE001 - cleanup must not mask the test's outcome
        warnings.warn(f"could not delete test bucket {bucket.bucket}: {exc}", stacklevel=1)


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """moto in server mode (AWS's stand-in: SageMaker) on a free loopback port."""
    from .moto import MotoServer, moto_installed

    if not moto_installed():
        unavailable("moto is not installed; run `scripts/bootstrap` (it is in the dev extra)")
    server = MotoServer(tmp_path_factory.mktemp("moto"))
    _STARTED["moto_server"] = server
    try:
        server.start()
    except (ServerFailed, TimeoutError, OSError) as exc:
        server.stop()
        _start_failed("moto (python -m moto.server)", exc)
    _TIMINGS["moto ready"] = server.ready_seconds or 0.0
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def moto(moto_server, monkeypatch: pytest.MonkeyPatch) -> object:
    """An empty moto account, and boto3's standard configuration (AWS_ENDPOINT_URL_SAGEMAKER,
    region, credentials) pointing at it for this test."""
    moto_server.reset()
    for name, value in moto_server.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    return moto_server


@pytest.fixture
def sagemaker_front(moto, monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    """moto behind a front answering the SageMaker calls moto lacks (tests/testenv/moto.py,
    ``StubbedCalls``: answers validated against botocore's model); boto3 is pointed at it."""
    from .moto import StubbedCalls

    front = StubbedCalls(moto).start()
    monkeypatch.setenv("AWS_ENDPOINT_URL_SAGEMAKER", front.endpoint_url)
    try:
        yield front
    finally:
        front.stop()


@pytest.fixture(scope="session")
def local_cluster() -> Iterator[object]:
    """A single-node Kubernetes that runs real pods (tests/testenv/localcluster).

    Brought up for the session, or reused when one is already healthy (then left running);
    the images of this tree (scripts/testenv images) are imported. A failed test's report
    gets the kubelet's, containerd's and the pods' logs. Set STEPFLOW_CLUSTER_KEEP=1 to keep
    a cluster this session started.
    """
    from .localcluster import ClusterError
    from .localcluster.session import Unavailable, finish, start

    try:
        session = start()
    except Unavailable as exc:
        unavailable(f"the local cluster cannot run here: {exc}")
    except (ClusterError, RuntimeError, OSError, subprocess.SubprocessError) as exc:
        _start_failed("the local cluster (containerd + kubelet + control plane)", exc)
    _STARTED["local_cluster"] = session
    if session.up_seconds is not None:
        _TIMINGS["local cluster up"] = session.up_seconds
    try:
        yield session
    finally:
        finish(session)


@pytest.fixture(scope="session")
def git_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """Smart-HTTP git server (git http-backend) on a free loopback port."""
    if shutil.which("git") is None:
        unavailable(f"git is not installed; run `{INSTALL_COMMAND}`")
    from .git import GitServer

    server = GitServer(tmp_path_factory.mktemp("git")).start()
    _STARTED["git_server"] = server
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def git_remote(git_server, request: pytest.FixtureRequest) -> object:
    """A fresh bare repository (branch main, no commits yet) with commit helpers."""
    from .git import GitRemote

    base = re.sub(r"[^a-zA-Z0-9_-]+", "-", request.node.name).strip("-")[:50] or "repo"
    return GitRemote(git_server, f"{base}-{secrets.token_hex(3)}")


# ---- hooks -------------------------------------------------------------------------------
def pytest_configure(config: pytest.Config) -> None:
    install_signal_handlers()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        names = getattr(item, "fixturenames", ())
        if "kube" in names:
            item.add_marker(pytest.mark.kube)
        if "s3_server" in names:
            item.add_marker(pytest.mark.s3)
        if "moto_server" in names:
            item.add_marker(pytest.mark.moto)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if not report.failed:
        return
    names = getattr(item, "fixturenames", ())
    for fixture, server in _STARTED.items():
        if fixture in names:
            try:
                tail = server.logs_tail(40)  # type: ignore[attr-defined]
            except Exception as exc:  # noqa: BLE001
                tail = f"(could not read logs: {exc})"
            report.sections.append((f"testenv: {fixture} server logs (tail)", tail))


def pytest_terminal_summary(terminalreporter) -> None:  # noqa: ANN001
    if _TIMINGS:
        parts = ", ".join(f"{k} in {v:.2f}s" for k, v in _TIMINGS.items())
        terminalreporter.write_line(f"testenv: {parts}")


def pytest_unconfigure(config: pytest.Config) -> None:
    stop_all()
