"""Git remotes: a bare repository reachable over file:// and smart HTTP on loopback."""

from __future__ import annotations

import os
import subprocess

import git
import pytest
from tests.testenv.git import git_env


def _git(*args: str, cwd=None, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=cwd, env=git_env(), capture_output=True,
                          text=True, timeout=60, check=check)


def test_gitpython_push_then_ls_remote_over_http(git_remote, tmp_path):
    work = git.Repo.init(tmp_path / "work", initial_branch="main")
    with work.config_writer() as cw:
        cw.set_value("user", "name", "t").set_value("user", "email", "t@example.invalid")
    (tmp_path / "work" / "pipeline.py").write_text("print('hello')\n")
    work.index.add(["pipeline.py"])
    sha = work.index.commit("first").hexsha
    work.create_remote("origin", git_remote.url).push("HEAD:refs/heads/main").raise_if_error()

    assert git_remote.head() == sha
    refs = git.cmd.Git().ls_remote(git_remote.url)
    assert f"{sha}\trefs/heads/main" in refs.splitlines()
    assert git_remote.url.startswith("http://127.0.0.1:")


def test_shallow_clone_over_http(git_remote, tmp_path):
    shas = [git_remote.commit({"pipeline.py": f"VERSION = {i}\n"}, message=f"v{i}")
            for i in range(3)]
    assert len(set(shas)) == 3
    clone = git.Repo.clone_from(git_remote.url, tmp_path / "clone", depth=1, branch="main",
                                env=git_env())
    assert clone.head.commit.hexsha == shas[-1]
    assert (tmp_path / "clone" / ".git" / "shallow").read_text().strip() == shas[-1]
    assert len(list(clone.iter_commits())) == 1
    assert (tmp_path / "clone" / "pipeline.py").read_text() == "VERSION = 2\n"

    full = git.Repo.clone_from(git_remote.file_url, tmp_path / "full", env=git_env())
    assert [c.hexsha for c in full.iter_commits()] == shas[::-1]


def test_commit_helper_writes_deletes_and_branches(git_remote, tmp_path):
    first = git_remote.commit({"a.txt": "A", "dir/b.bin": b"\x00\x01", "c.txt": "C"})
    second = git_remote.commit({"c.txt": None, "a.txt": "A2"}, message="edit")
    feature = git_remote.commit({"f.txt": "F"}, message="feature work", branch="feature")

    assert git_remote.head() == second
    assert git_remote.head("feature") == feature
    bare = git.Repo(git_remote.path)
    assert bare.commit(second).parents[0].hexsha == first
    assert bare.commit(feature).parents[0].hexsha == second  # branched from main
    tree = bare.commit(second).tree
    assert {b.path for b in tree.traverse() if b.type == "blob"} == {"a.txt", "dir/b.bin"}
    assert tree["dir/b.bin"].data_stream.read() == b"\x00\x01"
    assert tree["a.txt"].data_stream.read() == b"A2"
    assert bare.commit(second).message.strip() == "edit"

    tag = git_remote.tag("v1.0", first)
    assert tag == first
    refs = _git("ls-remote", git_remote.url, cwd=tmp_path).stdout
    assert f"{first}\trefs/tags/v1.0" in refs
    assert f"{feature}\trefs/heads/feature" in refs


def test_http_basic_auth_rejects_wrong_credentials(git_remote, tmp_path):
    sha = git_remote.commit({"x": "1"})
    url = git_remote.http_url_with_auth("alice", "s3cret")
    assert "alice" not in url and "s3cret" not in url

    no_creds = _git("ls-remote", url, cwd=tmp_path, check=False)
    assert no_creds.returncode != 0
    wrong = _git("ls-remote", url.replace("http://", "http://alice:wrong@"), cwd=tmp_path,
                 check=False)
    assert wrong.returncode != 0
    assert "Authentication failed" in wrong.stderr or "401" in wrong.stderr

    right = _git("ls-remote", url.replace("http://", "http://alice:s3cret@"), cwd=tmp_path)
    assert f"{sha}\trefs/heads/main" in right.stdout

    # credentials are per repository: another repo's URL does not accept them
    other = url.replace(git_remote.name, "nonexistent")
    assert _git("ls-remote", other.replace("http://", "http://alice:s3cret@"), cwd=tmp_path,
                check=False).returncode != 0


@pytest.mark.parametrize("use_auth", [False, True])
def test_push_over_http(git_remote, tmp_path, use_auth):
    git_remote.commit({"base": "0"})
    url = git_remote.url
    if use_auth:
        url = git_remote.http_url_with_auth("bob", "pw").replace("http://", "http://bob:pw@")
    work = git.Repo.clone_from(url, tmp_path / "w", env=git_env())
    with work.config_writer() as cw:
        cw.set_value("user", "name", "t").set_value("user", "email", "t@example.invalid")
    # 2 MiB that does not compress: larger than http.postBuffer, so git sends it chunked
    (tmp_path / "w" / "big.bin").write_bytes(os.urandom(2 * 1024 * 1024))
    work.index.add(["big.bin"])
    sha = work.index.commit("big").hexsha
    work.remote("origin").push("HEAD:refs/heads/main", env=git_env()).raise_if_error()
    assert git_remote.head() == sha


def test_https_with_basic_auth_and_a_private_ca(git_remote, tmp_path):
    sha = git_remote.commit({"x": "1"})
    url = git_remote.https_url_with_auth("carol", "pa55")
    assert url.startswith("https://127.0.0.1:")
    with_creds = url.replace("https://", "https://carol:pa55@")

    def ls_remote(u: str, ca: str | None) -> subprocess.CompletedProcess:
        # GIT_SSL_CAINFO (set on some machines) overrides http.sslCAInfo: set the variable
        env = {**git_env(), "GIT_SSL_CAINFO": ca or "/etc/ssl/certs/ca-certificates.crt"}
        if ca is None:
            env.pop("GIT_SSL_CAINFO")
        return subprocess.run(["git", "ls-remote", u], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=60)

    untrusted = ls_remote(with_creds, None)
    assert untrusted.returncode != 0
    assert "certificate" in untrusted.stderr.lower()

    wrong = ls_remote(url.replace("https://", "https://carol:nope@"), git_remote.ca_file)
    assert wrong.returncode != 0
    assert "Authentication failed" in wrong.stderr or "401" in wrong.stderr
    right = ls_remote(with_creds, git_remote.ca_file)
    assert f"{sha}\trefs/heads/main" in right.stdout, right.stderr
    anon = ls_remote(git_remote.https_url, git_remote.ca_file)
    assert f"{sha}\trefs/heads/main" in anon.stdout, anon.stderr
