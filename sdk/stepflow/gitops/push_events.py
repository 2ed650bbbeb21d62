"""Push webhooks from git hosts: signature checks, what an event says, which sources it moves.

Kubernetes-free and I/O-free, so every provider's rules are tested on plain bytes; the
operator's receiver (``stepflow_operator.receiver``) serves HTTP and triggers reconciles.
The model is Flux's notification-controller ``Receiver``:

========== ============================================ ===================================
provider   authenticity                                 events
========== ============================================ ===================================
github     ``X-Hub-Signature-256: sha256=<HMAC>``       ``X-GitHub-Event``: push, ping
gitlab     ``X-Gitlab-Token: <token>``                  ``X-Gitlab-Event``: Push Hook, Tag Push Hook
gitea      ``X-Gitea-Signature: <HMAC>``                ``X-Gitea-Event``: push
bitbucket  ``X-Hub-Signature: sha256=<HMAC>``           ``X-Event-Key``: repo:refs_changed,
           (Bitbucket Data Center)                      diagnostics:ping
generic    ``X-Signature: sha256=<HMAC>``               any POST; ``{"url", "ref"}`` narrows it
========== ============================================ ===================================

HMAC is HMAC-SHA256 of the raw body keyed with the token, compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

PROVIDERS = ("github", "gitlab", "gitea", "bitbucket", "generic")
Provider = Literal["github", "gitlab", "gitea", "bitbucket", "generic"]

#: (header, prefix) of the HMAC signature, per provider; gitlab sends the token itself.
_SIGNATURE_HEADERS: dict[str, tuple[str, str]] = {
    "github": ("X-Hub-Signature-256", "sha256="),
    "gitea": ("X-Gitea-Signature", ""),
    "bitbucket": ("X-Hub-Signature", "sha256="),
    "generic": ("X-Signature", "sha256="),
}


class Unsigned(Exception):
    """The request carries no signature or token at all (HTTP 401)."""


class BadSignature(Exception):
    """The signature or token does not match (HTTP 403)."""


class BadPayload(Exception):
    """An authentic request whose body is not the event it claims to be (HTTP 400)."""


def webhook_path(token: str, name: str, namespace: str) -> str:
    """The receiver's URL path: unguessable without the token, as Flux derives it."""
    return "/hook/" + hashlib.sha256(f"{token}{name}{namespace}".encode()).hexdigest()


def sign(token: bytes, body: bytes) -> str:
    """The hex HMAC-SHA256 of ``body`` (what a sender puts in its signature header)."""
    return hmac.new(token, body, hashlib.sha256).hexdigest()


def verify(provider: Provider, token: bytes, headers: Mapping[str, str], body: bytes) -> None:
    """Raise :class:`Unsigned` or :class:`BadSignature` unless the request is authentic."""
    if provider == "gitlab":
        given = headers.get("X-Gitlab-Token")
        if not given:
            raise Unsigned("no X-Gitlab-Token header")
        if not hmac.compare_digest(given.encode(), token):
            raise BadSignature("X-Gitlab-Token does not match")
        return
    header, prefix = _SIGNATURE_HEADERS[provider]
    given = headers.get(header)
    if not given:
        raise Unsigned(f"no {header} header")
    if not given.startswith(prefix):
        raise BadSignature(f"{header} is not {prefix or 'a hex '}HMAC-SHA256")
    if not hmac.compare_digest(given[len(prefix):].lower().encode(), sign(token, body).encode()):
        raise BadSignature(f"{header} does not match the body")


@dataclass(frozen=True)
class Push:
    """A push: the repository's URLs as the host gives them, and the full ref that moved.

    Empty ``urls`` (a generic POST without a body) means every source of the receiver's
    namespace; ``ref`` None means any ref.
    """

    urls: tuple[str, ...]
    ref: str | None


@dataclass(frozen=True)
class Ping:
    """The host checks the hook works (GitHub, Bitbucket)."""


@dataclass(frozen=True)
class Ignored:
    """An authentic event that moves no source (issues, pull requests...)."""

    event: str


Event = Push | Ping | Ignored


def parse(provider: Provider, headers: Mapping[str, str], body: bytes) -> Event:
    """What an authentic request says. Call :func:`verify` first."""
    if provider == "github":
        event = headers.get("X-GitHub-Event", "")
        if event == "ping":
            return Ping()
        if event != "push":
            return Ignored(event)
        data = _json(body)
        repo = _mapping(data.get("repository"))
        return Push(_strings(repo, "clone_url", "ssh_url", "git_url", "html_url", "url"), _ref(data.get("ref")))
    if provider == "gitea":
        event = headers.get("X-Gitea-Event", "")
        if event != "push":
            return Ignored(event)
        data = _json(body)
        repo = _mapping(data.get("repository"))
        return Push(_strings(repo, "clone_url", "ssh_url", "html_url"), _ref(data.get("ref")))
    if provider == "gitlab":
        event = headers.get("X-Gitlab-Event", "")
        if event not in ("Push Hook", "Tag Push Hook"):
            return Ignored(event)
        data = _json(body)
        project, repo = _mapping(data.get("project")), _mapping(data.get("repository"))
        urls = _strings(project, "git_http_url", "git_ssh_url", "web_url") + _strings(
            repo, "git_http_url", "git_ssh_url", "homepage")
        return Push(urls, _ref(data.get("ref")))
    if provider == "bitbucket":
        event = headers.get("X-Event-Key", "")
        if event == "diagnostics:ping":
            return Ping()
        if event != "repo:refs_changed":
            return Ignored(event)
        data = _json(body)
        links = _mapping(_mapping(data.get("repository")).get("links"))
        urls = tuple(str(c["href"]) for c in links.get("clone") or () if isinstance(c, Mapping) and c.get("href"))
        refs = [_mapping(_mapping(c).get("ref")).get("id") for c in data.get("changes") or ()]
        # One push may move several refs: one Push per ref would be exact; any of them will do.
        return Push(urls, None) if len(refs) != 1 else Push(urls, _ref(refs[0]))
    # generic: an empty body moves everything; a JSON body may narrow it.
    if not body.strip():
        return Push((), None)
    data = _json(body)
    url = data.get("url")
    return Push((str(url),) if url else (), _ref(data.get("ref")))


def repository_key(url: str) -> str:
    """The same repository whatever the transport: ``host/path``, lower-cased, no ``.git``.

    ``https://GitHub.com/org/repo.git``, ``ssh://git@github.com/org/repo`` and
    ``git@github.com:org/repo.git`` give one key. Ports are dropped (ssh and https differ).
    """
    url = url.strip()
    if "://" not in url and ":" in url.split("/", 1)[0]:  # scp-like: [user@]host:path
        host, _, path = url.partition(":")
        host = host.rpartition("@")[2]
    else:
        parts = urlsplit(url)
        host, path = parts.hostname or "", parts.path
    path = path.strip("/")
    if path.endswith(".git"):
        path = path[: -len(".git")]
    return f"{host}/{path}".lower()


def moves(push: Push, source_url: str, remote_ref: str | None) -> bool:
    """Whether ``push`` moved a source at ``source_url`` following ``remote_ref``
    (``refs/heads/main``, ``refs/tags/v1``; None: a pinned commit, which no push moves)."""
    if remote_ref is None:
        return False
    if push.urls and repository_key(source_url) not in {repository_key(u) for u in push.urls}:
        return False
    return push.ref is None or push.ref == remote_ref


def _json(body: bytes) -> Mapping[str, Any]:
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadPayload(f"the body is not JSON ({exc.__class__.__name__})") from None
    if not isinstance(data, Mapping):
        raise BadPayload("the body is not a JSON object")
    return data


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _strings(data: Mapping[str, Any], *keys: str) -> tuple[str, ...]:
    return tuple(str(data[k]) for k in keys if isinstance(data.get(k), str) and data[k])


def _ref(value: object) -> str | None:
    """A full ref name; a bare branch name is taken as ``refs/heads/<name>``."""
    if not isinstance(value, str) or not value:
        return None
    return value if value.startswith("refs/") else f"refs/heads/{value}"
