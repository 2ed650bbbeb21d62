"""The git source against real repositories over file:// and smart HTTP (with and without auth)."""

from __future__ import annotations

import base64
import socket
import stat
import subprocess
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from tests.testenv import free_port

from stepflow.errors import ConfigurationError
from stepflow.gitops.gitauth import GitCredentials, git_environment
from stepflow.gitops.source import (
    AUTHENTICATION_FAILED,
    GIT_OPERATION_FAILED,
    REF_NOT_FOUND,
    TIMEOUT,
    GitSource,
    Ref,
    SourceError,
    normalize_url,
    safe_url,
)
from stepflow.locks import flock

PASSWORD = "pa55-w0rd-never-shown"


@pytest.fixture
def source(tmp_path: Path) -> GitSource:
    return GitSource(tmp_path / "cache")


def _requests(git_remote) -> int:
    """HTTP requests the git server has answered so far (one log line each)."""
    return sum(1 for line in git_remote.server.log_path.read_text().splitlines()
               if f"/{git_remote.name}.git/" in line and ('"GET ' in line or '"POST ' in line))


def _files(checkout_path: Path) -> dict[str, str]:
    return {str(p.relative_to(checkout_path)): p.read_text()
            for p in checkout_path.rglob("*") if p.is_file()}


def test_resolve_then_fetch_a_branch_over_http(source, git_remote):
    sha = git_remote.commit({"pipelines/churn.py": "x = 1\n", "README.md": "hi\n"}, "first")
    assert source.resolve(git_remote.url, Ref(branch="main")) == sha
    with source.fetch(git_remote.url, Ref(branch="main"), sha) as checkout:
        assert checkout.fetched
        assert checkout.commit == sha
        assert checkout.revision == f"main@sha1:{sha}"
        assert _files(checkout.path) == {"pipelines/churn.py": "x = 1\n", "README.md": "hi\n"}
        assert not (checkout.path / ".git").exists()
        assert stat.S_IMODE(checkout.path.stat().st_mode) == 0o700
        committed = subprocess.run(["git", "show", "-s", "--format=%ct", sha], cwd=git_remote.path,
                                   capture_output=True, text=True, check=True).stdout.strip()
        assert checkout.committed_at == int(committed)
    assert not checkout.path.exists()


def test_an_unchanged_commit_costs_one_ls_remote_and_no_fetch(source, git_remote):
    sha = git_remote.commit({"a.py": "1\n"})
    source.fetch(git_remote.url, Ref(branch="main"), source.resolve(git_remote.url,
                                                                   Ref(branch="main"))).cleanup()
    before = _requests(git_remote)
    assert source.resolve(git_remote.url, Ref(branch="main")) == sha
    after_resolve = _requests(git_remote)
    assert 1 <= after_resolve - before <= 2  # info/refs (+ ls-refs with protocol v2)
    again = source.fetch(git_remote.url, Ref(branch="main"), sha)
    assert not again.fetched
    assert _requests(git_remote) == after_resolve  # no network at all
    assert _files(again.path) == {"a.py": "1\n"}
    again.cleanup()


def test_a_new_commit_is_fetched_and_old_checkouts_stay_intact(source, git_remote):
    first = git_remote.commit({"a.py": "1\n"})
    old = source.fetch(git_remote.url, Ref(branch="main"), first)
    second = git_remote.commit({"a.py": "2\n", "b.py": "new\n"})
    assert source.resolve(git_remote.url, Ref(branch="main")) == second
    new = source.fetch(git_remote.url, Ref(branch="main"), second)
    assert new.fetched and new.path != old.path
    assert _files(new.path) == {"a.py": "2\n", "b.py": "new\n"}
    assert _files(old.path) == {"a.py": "1\n"}
    old.cleanup()
    new.cleanup()


def test_annotated_tag_resolves_to_its_commit(source, git_remote):
    sha = git_remote.commit({"a.py": "tagged\n"})
    tag_object = git_remote.tag("v1.0", message="release")
    assert tag_object != sha
    assert source.resolve(git_remote.url, Ref(tag="v1.0")) == sha
    with source.fetch(git_remote.url, Ref(tag="v1.0"), sha) as checkout:
        assert checkout.revision == f"v1.0@sha1:{sha}"
        assert _files(checkout.path) == {"a.py": "tagged\n"}


def test_a_pinned_older_commit_needs_no_ls_remote_and_is_fetched_by_sha(source, git_remote):
    old = git_remote.commit({"a.py": "old\n"})
    git_remote.commit({"a.py": "new\n"})
    before = _requests(git_remote)
    assert source.resolve(git_remote.url, Ref(commit=old)) == old
    assert _requests(git_remote) == before
    with source.fetch(git_remote.url, Ref(commit=old), old) as checkout:
        assert checkout.revision == f"sha1:{old}"
        assert _files(checkout.path) == {"a.py": "old\n"}
    before = _requests(git_remote)
    source.fetch(git_remote.url, Ref(commit=old), old).cleanup()
    assert _requests(git_remote) == before


def test_a_pushed_commit_is_fetched_by_sha_without_listing_the_refs_again(source, git_remote):
    first = git_remote.commit({"a.py": "1\n"})
    source.fetch(git_remote.url, Ref(branch="main"), first).cleanup()
    pushed = git_remote.commit({"a.py": "2\n"})
    assert source.resolve(git_remote.url, Ref(branch="main")) == pushed
    before = _requests(git_remote)
    with source.fetch(git_remote.url, Ref(branch="main"), pushed) as checkout:
        assert _files(checkout.path) == {"a.py": "2\n"}
    # The capabilities, then the fetch itself: no ls-refs (a fetch by ref makes three).
    assert _requests(git_remote) - before == 2


def test_file_urls_work_too(source, git_remote):
    sha = git_remote.commit({"m.py": "1\n"})
    assert source.resolve(git_remote.file_url, Ref(branch="main")) == sha
    with source.fetch(git_remote.file_url, Ref(branch="main"), sha) as checkout:
        assert _files(checkout.path) == {"m.py": "1\n"}


def test_missing_branch_tag_and_commit_are_ref_not_found(source, git_remote):
    git_remote.commit({"a.py": "1\n"})
    for ref in (Ref(branch="does-not-exist"), Ref(tag="v9.9")):
        with pytest.raises(SourceError) as err:
            source.resolve(git_remote.url, ref)
        assert err.value.reason == REF_NOT_FOUND
        assert ref.name in str(err.value) and git_remote.url in str(err.value)
        assert "spec.source.ref" in str(err.value)
    ghost = "0123456789abcdef0123456789abcdef01234567"
    with pytest.raises(SourceError) as err:
        source.fetch(git_remote.url, Ref(commit=ghost), ghost)
    assert err.value.reason == REF_NOT_FOUND and ghost in str(err.value)


def test_unreachable_and_nonexistent_repositories(source, git_remote):
    closed = f"http://127.0.0.1:{free_port()}/nothing.git"
    with pytest.raises(SourceError) as err:
        source.resolve(closed, Ref(branch="main"), timeout=20)
    assert err.value.reason == GIT_OPERATION_FAILED
    assert closed in str(err.value) and "spec.source.url" in str(err.value)
    missing = git_remote.url.replace(git_remote.name, "no-such-repo")
    with pytest.raises(SourceError) as err:
        source.resolve(missing, Ref(branch="main"), timeout=20)
    assert err.value.reason == GIT_OPERATION_FAILED
    with pytest.raises(SourceError) as err:
        source.resolve("file:///nonexistent/repo.git", Ref(branch="main"))
    assert "does not appear to be a git repository" in str(err.value)


def test_a_server_that_never_answers_times_out_and_the_process_is_killed(source):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)  # accepts connections (kernel backlog) but never answers
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/slow.git"
    try:
        started = time.monotonic()
        with pytest.raises(SourceError) as err:
            source.resolve(url, Ref(branch="main"), timeout=1.5)
        elapsed = time.monotonic() - started
    finally:
        listener.close()
    assert err.value.reason == TIMEOUT and "spec.source.timeout" in str(err.value)
    assert elapsed < 6
    leftovers = subprocess.run(["pgrep", "-f", f"127.0.0.1:{url.split(':')[2]}"],
                               capture_output=True, text=True).stdout.split()
    assert leftovers == []


def test_credentials_work_and_are_never_shown_or_stored(source, git_remote, tmp_path,
                                                         monkeypatch):
    private_tmp = tmp_path / "tmp"
    private_tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(private_tmp))  # where the askpass goes
    sha = git_remote.commit({"private.py": "secret sauce\n"})
    url = git_remote.http_url_with_auth("alice", PASSWORD)

    with pytest.raises(SourceError) as err:
        source.resolve(url, Ref(branch="main"))
    assert err.value.reason == AUTHENTICATION_FAILED and "spec.source.secretRef" in str(err.value)

    wrong = GitCredentials(username="alice", password="not-" + PASSWORD)
    with pytest.raises(SourceError) as err:
        source.resolve(url, Ref(branch="main"), wrong)
    assert err.value.reason == AUTHENTICATION_FAILED
    assert "not-" + PASSWORD not in str(err.value) and "alice" not in str(err.value)

    right = GitCredentials.from_secret_data({
        "username": base64.b64encode(b"alice").decode(),
        "password": base64.b64encode(PASSWORD.encode()).decode()}, secret_name="git-auth")
    assert PASSWORD not in repr(right)
    assert source.resolve(url, Ref(branch="main"), right) == sha
    with source.fetch(url, Ref(branch="main"), sha, right) as checkout:
        assert _files(checkout.path) == {"private.py": "secret sauce\n"}
        for path in source.cache_dir.rglob("*"):
            if path.is_file() and not path.is_symlink():
                assert PASSWORD.encode() not in path.read_bytes(), f"password in {path}"
    assert list(private_tmp.iterdir()) == []  # the askpass helper's folder is gone


def test_concurrent_fetches_of_one_repository_share_the_cache(source, git_remote):
    sha = git_remote.commit({"a.py": "1\n"})
    barrier = threading.Barrier(4)

    def fetch():
        barrier.wait()
        return source.fetch(git_remote.url, Ref(branch="main"), sha)

    with ThreadPoolExecutor(4) as pool:
        checkouts = list(pool.map(lambda _: fetch(), range(4)))
    assert sum(c.fetched for c in checkouts) == 1
    assert len({c.path for c in checkouts}) == 4
    assert all(_files(c.path) == {"a.py": "1\n"} for c in checkouts)
    assert len(list((source.cache_dir / "repos").iterdir())) == 2  # the repo and its lock
    for c in checkouts:
        c.cleanup()


def test_a_fetch_waits_for_another_process_only_until_its_deadline(source, git_remote):
    sha = git_remote.commit({"a.py": "1\n"})
    source.fetch(git_remote.url, Ref(branch="main"), sha).cleanup()
    (lock,) = (source.cache_dir / "repos").glob("*.lock")
    with flock(lock, wait=0) as held:  # what another operator process holds while it fetches
        assert held
        started = time.monotonic()
        with pytest.raises(SourceError, match="another process") as err:
            source.fetch(git_remote.url, Ref(branch="main"), sha, timeout=0.5)
    assert err.value.reason == TIMEOUT and time.monotonic() - started < 5
    source.fetch(git_remote.url, Ref(branch="main"), sha).cleanup()  # free again


def test_ssh_key_lives_in_a_private_file_only_during_the_operation():
    credentials = GitCredentials(identity="-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n"
                                          "-----END OPENSSH PRIVATE KEY-----",
                                 known_hosts="git.example.com ssh-ed25519 AAAAC3Nz")
    with git_environment("ssh://git@git.example.com/ml/churn.git", credentials) as env:
        command = env["GIT_SSH_COMMAND"]
        assert "StrictHostKeyChecking=yes" in command and "BatchMode=yes" in command
        key = Path(command.split(" -i ")[1].split()[0])
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
        assert stat.S_IMODE(key.parent.stat().st_mode) == 0o700
        assert key.read_text().endswith("-----END OPENSSH PRIVATE KEY-----\n")
        assert "PRIVATE KEY" not in command
    assert not key.exists() and not key.parent.exists()


def test_https_password_is_only_in_the_environment_of_git():
    credentials = GitCredentials(username="bob", password=PASSWORD)
    with git_environment("https://git.example.com/r.git", credentials) as env:
        askpass = Path(env["GIT_ASKPASS"])
        assert askpass.parent.parent == Path(tempfile.gettempdir())
        assert PASSWORD not in askpass.read_text()
        answer = subprocess.run([str(askpass), "Password for 'https://bob@git.example.com': "],
                                env=env, capture_output=True, text=True, check=True).stdout
        assert answer == PASSWORD + "\n"
        user = subprocess.run([str(askpass), "Username for 'https://git.example.com': "],
                              env=env, capture_output=True, text=True, check=True).stdout
        assert user == "bob\n"
    assert not askpass.exists()


@pytest.mark.parametrize("data, fragment", [
    ({}, "neither"),
    ({"password": "!!notbase64!!"}, "not base64"),
    ({"password": base64.b64encode(b"p").decode(), "identity": base64.b64encode(b"k").decode()},
     "both"),
])
def test_bad_secrets_say_what_to_fix(data, fragment):
    with pytest.raises(ConfigurationError) as err:
        GitCredentials.from_secret_data(data, secret_name="git-auth")
    assert fragment in str(err.value) and "git-auth" in str(err.value)


def test_ssh_without_known_hosts_is_refused():
    with pytest.raises(ConfigurationError) as err:
        with git_environment("ssh://git@h/r.git", GitCredentials(identity="KEY")):
            pass
    assert "known_hosts" in str(err.value) and "ssh-keyscan" in str(err.value)


def test_urls_with_passwords_are_refused_and_userinfo_is_never_shown(source):
    with pytest.raises(ConfigurationError) as err:
        source.resolve(f"https://alice:{PASSWORD}@git.example.com/r.git", Ref(branch="main"))
    assert PASSWORD not in str(err.value) and "secretRef" in str(err.value)
    assert safe_url("ssh://git@host:2222/r.git") == "ssh://host:2222/r.git"
    with pytest.raises(ConfigurationError):
        source.resolve("git@github.com:ml/churn.git", Ref(branch="main"))


def test_cache_key_normalises_equivalent_urls():
    assert normalize_url("HTTPS://GitHub.com/ml/churn.git/") == \
        normalize_url("https://user@github.com:443/ml/churn")
    assert normalize_url("https://github.com/ml/churn") != normalize_url("https://github.com/ml/other")


def test_refs_must_name_exactly_one_thing():
    with pytest.raises(ConfigurationError):
        Ref(branch="main", tag="v1")
    with pytest.raises(ConfigurationError):
        Ref(commit="abc")
    assert Ref.from_spec(None) == Ref(branch="main")
    assert Ref.from_spec({"tag": "v2"}).revision("f" * 40) == f"v2@sha1:{'f' * 40}"
