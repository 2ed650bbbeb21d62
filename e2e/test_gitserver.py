"""The kind suite's git server and push path, on loopback, against the operator's own git
client (:class:`stepflow.gitops.source.GitSource`): needs neither docker nor kind, so a
broken server shows up here rather than as a Pipeline that never gets Ready in a cluster.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from e2e.cluster import wait_for
from e2e.gitrepo import SERVER_SCRIPT, Repo
from stepflow.gitops.source import GitSource, Ref, SourceError


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """``gitserver.py serve`` as a process on 127.0.0.1; its base URL and repository root."""
    root, log = tmp_path / "srv", tmp_path / "gitserver.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, str(SERVER_SCRIPT), "serve", "--root", str(root),
                                 "--host", "127.0.0.1", "--port", "0"], stdout=out, stderr=subprocess.STDOUT)
    try:
        found = wait_for(lambda: proc.poll() is not None or re.search(r"on (http://\S+)/", log.read_text()),
                         20, "the git server to listen", interval=0.05)
        assert proc.poll() is None, log.read_text()
        yield found.group(1), root
    finally:
        proc.terminate()
        proc.wait(10)


def _local_push(root: Path):
    def push(repo: str, bundle: bytes) -> None:
        subprocess.run([sys.executable, str(SERVER_SCRIPT), "push", "--root", str(root), "--repo", repo],
                       input=bundle, check=True, timeout=60)
    return push


def test_the_operator_fetches_shallowly_from_the_server(served, tmp_path):
    base, root = served
    repo = Repo("flow", f"{base}/flow.git", _local_push(root), tmp_path / "work")
    first = repo.commit({"pipelines/flow.py": "x = 1\n", "README.md": "v1\n"}, "v1")
    source = GitSource(tmp_path / "cache")

    assert source.resolve(repo.url, Ref(branch="main")) == first
    with source.fetch(repo.url, Ref(branch="main"), first) as checkout:
        assert (checkout.path / "pipelines/flow.py").read_text() == "x = 1\n"
        assert checkout.fetched

    # a second push moves the branch; the first commit stays fetchable by SHA (protocol v2)
    second = repo.commit({"pipelines/flow.py": "x = 2\n", "README.md": None}, "v2")
    assert second != first
    assert source.resolve(repo.url, Ref(branch="main")) == second
    with source.fetch(repo.url, Ref(branch="main"), second) as checkout:
        assert (checkout.path / "pipelines/flow.py").read_text() == "x = 2\n"
        assert not (checkout.path / "README.md").exists()
    pinned = GitSource(tmp_path / "cache-2")
    with pinned.fetch(repo.url, Ref(commit=first), first) as checkout:
        assert (checkout.path / "README.md").read_text() == "v1\n"


def test_unknown_repositories_and_bad_names_are_refused(served, tmp_path):
    base, root = served
    source = GitSource(tmp_path / "cache")
    with pytest.raises(SourceError, match="nothing.git/' not found") as refused:
        source.resolve(f"{base}/nothing.git", Ref(branch="main"), timeout=20)
    assert refused.value.reason == "GitOperationFailed"
    proc = subprocess.run([sys.executable, str(SERVER_SCRIPT), "push", "--root", str(root), "--repo", "../up"],
                          input=b"", capture_output=True, timeout=60, check=False)
    assert proc.returncode != 0 and b"letters, digits" in proc.stderr
    assert not (root.parent / "up.git").exists()
