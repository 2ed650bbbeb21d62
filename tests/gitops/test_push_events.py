"""Push webhooks: each provider's authenticity rule, what its events say, which sources move."""

from __future__ import annotations

import json

import pytest

from stepflow.gitops import push_events as pe

TOKEN = b"s3cret-token"


def _github_push(url: str = "https://github.com/org/repo.git", ref: str = "refs/heads/main") -> bytes:
    return json.dumps({"ref": ref, "repository": {"clone_url": url, "ssh_url": "git@github.com:org/repo.git",
                                                  "html_url": "https://github.com/org/repo"}}).encode()


@pytest.mark.parametrize("provider,header,prefix", [
    ("github", "X-Hub-Signature-256", "sha256="), ("gitea", "X-Gitea-Signature", ""),
    ("bitbucket", "X-Hub-Signature", "sha256="), ("generic", "X-Signature", "sha256=")])
def test_hmac_providers_accept_only_the_body_signed_with_the_token(provider, header, prefix):
    body = b'{"ref": "refs/heads/main"}'
    pe.verify(provider, TOKEN, {header: prefix + pe.sign(TOKEN, body)}, body)
    pe.verify(provider, TOKEN, {header: prefix + pe.sign(TOKEN, body).upper()}, body)
    with pytest.raises(pe.Unsigned):
        pe.verify(provider, TOKEN, {}, body)
    with pytest.raises(pe.BadSignature):
        pe.verify(provider, TOKEN, {header: prefix + pe.sign(b"other", body)}, body)
    with pytest.raises(pe.BadSignature):
        pe.verify(provider, TOKEN, {header: prefix + pe.sign(TOKEN, body)}, body + b" ")


def test_gitlab_compares_the_token_itself():
    pe.verify("gitlab", TOKEN, {"X-Gitlab-Token": TOKEN.decode()}, b"{}")
    with pytest.raises(pe.Unsigned):
        pe.verify("gitlab", TOKEN, {}, b"{}")
    with pytest.raises(pe.BadSignature):
        pe.verify("gitlab", TOKEN, {"X-Gitlab-Token": "s3cret-tokeN"}, b"{}")


def test_events_by_provider():
    assert pe.parse("github", {"X-GitHub-Event": "ping"}, b"{}") == pe.Ping()
    assert pe.parse("github", {"X-GitHub-Event": "issues"}, b"{}") == pe.Ignored("issues")
    push = pe.parse("github", {"X-GitHub-Event": "push"}, _github_push())
    assert isinstance(push, pe.Push) and push.ref == "refs/heads/main"
    assert "git@github.com:org/repo.git" in push.urls
    gitlab = pe.parse("gitlab", {"X-Gitlab-Event": "Tag Push Hook"}, json.dumps(
        {"ref": "refs/tags/v1", "project": {"git_http_url": "https://gitlab.example/g/p.git"}}).encode())
    assert gitlab == pe.Push(("https://gitlab.example/g/p.git",), "refs/tags/v1")
    assert pe.parse("gitlab", {"X-Gitlab-Event": "Merge Request Hook"}, b"{}") == pe.Ignored("Merge Request Hook")
    assert pe.parse("bitbucket", {"X-Event-Key": "diagnostics:ping"}, b"") == pe.Ping()
    bitbucket = pe.parse("bitbucket", {"X-Event-Key": "repo:refs_changed"}, json.dumps({
        "repository": {"links": {"clone": [{"href": "ssh://git@bb.example:7999/p/r.git"}]}},
        "changes": [{"ref": {"id": "refs/heads/dev"}}]}).encode())
    assert bitbucket == pe.Push(("ssh://git@bb.example:7999/p/r.git",), "refs/heads/dev")
    assert pe.parse("generic", {}, b"") == pe.Push((), None)
    narrowed = pe.parse("generic", {}, b'{"url": "https://h/r", "ref": "main"}')
    assert narrowed == pe.Push(("https://h/r",), "refs/heads/main")
    with pytest.raises(pe.BadPayload):
        pe.parse("github", {"X-GitHub-Event": "push"}, b"not json")


@pytest.mark.parametrize("url", [
    "https://github.com/Org/Repo.git", "https://github.com/org/repo", "ssh://git@github.com/org/repo.git",
    "git@github.com:org/repo.git", "http://user:pw@github.com:443/org/repo/"])
def test_one_repository_whatever_the_transport(url):
    assert pe.repository_key(url) == "github.com/org/repo"


def test_a_push_moves_the_sources_on_its_repository_and_ref():
    push = pe.Push(("https://github.com/org/repo.git",), "refs/heads/main")
    assert pe.moves(push, "git@github.com:org/repo.git", "refs/heads/main")
    assert not pe.moves(push, "git@github.com:org/repo.git", "refs/heads/dev")
    assert not pe.moves(push, "https://github.com/org/other", "refs/heads/main")
    assert not pe.moves(push, "https://github.com/org/repo", None)  # a pinned commit never moves
    assert pe.moves(pe.Push((), None), "https://anything/x", "refs/tags/v1")


def test_the_path_hides_the_token():
    path = pe.webhook_path("tok", "gh", "ns")
    assert path.startswith("/hook/") and len(path) == len("/hook/") + 64 and "tok" not in path
    assert path != pe.webhook_path("tok2", "gh", "ns") and path != pe.webhook_path("tok", "gh", "ns2")
