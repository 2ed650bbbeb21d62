"""The git source: which commit a ref points at, and that commit's files in a private folder.

Modelled on Flux's source-controller: ``resolve`` asks the remote (one ``ls-remote``) and
the caller stops there when the commit equals the one it already built, so a resync of
many unchanged Pipelines costs one round trip each and no fetch. ``fetch`` shallow-fetches
the one commit into a bare repository cached per normalised URL and shared by every
Pipeline that uses it, then copies that commit's tree into a fresh private folder the build
may do anything to. A pinned commit that is already cached costs nothing at all (Flux's
pinned refs used to clone on every interval, fluxcd/pkg#315).

Everything here blocks (git runs as a child process); the reconciler calls it from a
worker thread (``await asyncio.to_thread(source.fetch, ...)``), never on kopf's event loop.
Concurrent calls are safe: each cached repository is guarded by a thread lock and a file
lock, so threads and separate operator processes sharing the cache take turns.

Submodules are checked out too, recursively, each at the commit its parent records: fetched
into its own per-URL cache like any repository (a relative URL is resolved against the
parent's, as git does), with the parent's credentials when it lives on the same host (never
sent elsewhere), and refused when a remote repository points at a ``file://`` one. A
submodule that cannot be fetched fails the fetch with its path and URL in the message.

Every git call runs under the caller's deadline and is killed (with its children) when it
expires. Failures are :class:`SourceError` with one of the reasons Flux users know:
``GitOperationFailed``, ``AuthenticationFailed``, ``RefNotFound``, ``Timeout``. Messages
name the URL without userinfo and never contain a credential.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import posixpath
import re
import shutil
import tarfile
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import git

from stepflow.errors import INFRASTRUCTURE, USER, ConfigurationError, StepflowError
from stepflow.gitops.gitauth import BASE_ENV, GitCredentials, git_environment
from stepflow.locks import flock

GIT_OPERATION_FAILED = "GitOperationFailed"
AUTHENTICATION_FAILED = "AuthenticationFailed"
REF_NOT_FOUND = "RefNotFound"
TIMEOUT = "Timeout"

_SHA1 = re.compile(r"^[0-9a-f]{40}$")
_SCHEMES = ("https", "http", "ssh", "file")
#: Submodules of submodules of ...: deeper than this is a cycle or a mistake.
MAX_SUBMODULE_DEPTH = 8


class SourceError(StepflowError):
    """The repository could not be read; ``reason`` says why in one word.

    Retried by default: a git server that is down, a Secret fixed later and a branch pushed
    later all heal without a change to the Pipeline.
    """

    reason = GIT_OPERATION_FAILED
    kind = INFRASTRUCTURE


@dataclass(frozen=True)
class Ref:
    """``spec.source.ref``: exactly one of branch, tag or a full commit SHA."""

    branch: str | None = None
    tag: str | None = None
    commit: str | None = None

    def __post_init__(self) -> None:
        chosen = [k for k in ("branch", "tag", "commit") if getattr(self, k)]
        if len(chosen) != 1:
            raise ConfigurationError(
                f"spec.source.ref must set exactly one of branch, tag or commit (got "
                f"{', '.join(chosen) or 'none'}); e.g. `ref: {{branch: main}}`",
                reason="InvalidRef")
        if self.commit is not None and not _SHA1.match(self.commit):
            raise ConfigurationError(
                f"spec.source.ref.commit {self.commit!r} is not a full 40-character SHA-1; "
                "use `git rev-parse <commit>` to get it", reason="InvalidRef")

    @classmethod
    def from_spec(cls, spec: Mapping[str, str] | None) -> Ref:
        """From the resource's ``spec.source.ref``; no ref means branch ``main``."""
        spec = spec or {"branch": "main"}
        unknown = set(spec) - {"branch", "tag", "commit"}
        if unknown:
            raise ConfigurationError(
                f"spec.source.ref has unknown keys {sorted(unknown)}; use branch, tag or commit",
                reason="InvalidRef")
        return cls(**spec)

    @property
    def name(self) -> str:
        """The ref's short name: ``main``, ``v1.2``, or the SHA."""
        return self.branch or self.tag or self.commit or ""

    def describe(self) -> str:
        kind = "branch" if self.branch else "tag" if self.tag else "commit"
        return f"{kind} {self.name!r}"

    def remote_ref(self) -> str | None:
        """The full ref name on the remote; None for a commit."""
        if self.branch:
            return f"refs/heads/{self.branch}"
        if self.tag:
            return f"refs/tags/{self.tag}"
        return None

    def revision(self, commit: str) -> str:
        """Flux's revision format: ``main@sha1:<commit>``, or ``sha1:<commit>`` when pinned."""
        return f"sha1:{commit}" if self.commit else f"{self.name}@sha1:{commit}"


@dataclass(frozen=True)
class Submodule:
    """A gitlink of a commit's tree and what ``.gitmodules`` says about it."""

    path: str
    url: str  # as written in .gitmodules (maybe relative)
    commit: str


@dataclass
class Checkout:
    """One commit's files in a private folder; the build owns it until :meth:`cleanup`."""

    path: Path
    url: str
    ref: Ref
    commit: str
    committed_at: int
    fetched: bool = field(default=False)

    @property
    def revision(self) -> str:
        return self.ref.revision(self.commit)

    def cleanup(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)

    def __enter__(self) -> Checkout:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()


def safe_url(url: str) -> str:
    """``url`` without userinfo, for messages and logs."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit(parts._replace(netloc=netloc))


def normalize_url(url: str) -> str:
    """The cache key of a repository: scheme and host lower-cased, no userinfo, no ``.git``."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    default_port = {"https": 443, "http": 80, "ssh": 22}.get(scheme)
    port = f":{parts.port}" if parts.port and parts.port != default_port else ""
    path = parts.path.rstrip("/")
    if path.endswith(".git"):
        path = path[: -len(".git")]
    return f"{scheme}://{host}{port}{path}"


class GitSource:
    """Resolves refs and materialises commits, with one bare-repository cache per URL."""

    def __init__(self, cache_dir: str | os.PathLike[str]) -> None:
        self.cache_dir = Path(cache_dir)
        self._repos = self.cache_dir / "repos"
        self._checkouts = self.cache_dir / "checkouts"
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        self._repos.mkdir(mode=0o700, exist_ok=True)
        # Traverse-only: the sandboxed build (another uid) must reach its own checkout,
        # but nobody may list the others.
        self._checkouts.mkdir(mode=0o711, exist_ok=True)
        os.chmod(self.cache_dir, 0o711)
        os.chmod(self._checkouts, 0o711)

    def resolve(self, url: str, ref: Ref, credentials: GitCredentials | None = None,
                timeout: float = 60.0) -> str:
        """The commit ``ref`` points at on the remote, by one ``ls-remote`` (none for a commit)."""
        _check_url(url)
        if ref.commit:
            return ref.commit
        deadline = time.monotonic() + timeout
        remote_ref = ref.remote_ref()
        assert remote_ref is not None
        with git_environment(url, credentials) as env:
            # A pattern matches a whole ref name, so an annotated tag's peeled commit
            # (``refs/tags/v1^{}``) needs its own.
            out = _run(git.Git(), "ls_remote", url, remote_ref, f"{remote_ref}^{{}}", env=env,
                       deadline=deadline, url=url, credentials=credentials,
                       what=f"list {ref.describe()}")
        refs = dict(_parse_ls_remote(out))
        commit = refs.get(f"{remote_ref}^{{}}") or refs.get(remote_ref)
        if commit is None:
            raise SourceError(
                f"{ref.describe()} does not exist in {safe_url(url)}; check "
                f"spec.source.ref (names are case-sensitive) or push it",
                reason=REF_NOT_FOUND)
        return commit

    def fetch(self, url: str, ref: Ref, commit: str, credentials: GitCredentials | None = None,
              timeout: float = 60.0) -> Checkout:
        """``commit``'s tree in a fresh private folder; fetches only when the cache lacks it."""
        _check_url(url)
        if not _SHA1.match(commit):
            raise ValueError(f"commit must be a full SHA-1, got {commit!r}")
        deadline = time.monotonic() + timeout
        key = normalize_url(url)
        repo_dir = self._repo_dir(url)
        with _repository_lock(repo_dir, deadline, url):
            repo = _open_cache(repo_dir, key, deadline, url)
            fetched = False
            if not _has_commit(repo, commit, deadline):
                with git_environment(url, credentials) as env:
                    self._fetch_commit(repo, url, ref, commit, credentials, env, deadline)
                fetched = True
            path = Path(tempfile.mkdtemp(prefix="checkout-", dir=self._checkouts))
            try:
                committed_at = _materialise(repo, commit, path, deadline, url)
                if committed_at is None:  # an empty tree: no file carries the time
                    committed_at = int(_run(repo.git, "show", "-s", "--format=%ct", commit,
                                            deadline=deadline, url=url, what="read the commit"))
                submodules = _submodules_of(repo, commit, deadline, url)
            except BaseException:
                shutil.rmtree(path, ignore_errors=True)
                raise
        try:
            self._checkout_submodules(url, submodules, path, credentials, deadline, depth=1)
        except BaseException:
            shutil.rmtree(path, ignore_errors=True)
            raise
        return Checkout(path=path, url=safe_url(url), ref=ref, commit=commit,
                        committed_at=committed_at, fetched=fetched)

    def _repo_dir(self, url: str) -> Path:
        return self._repos / hashlib.sha256(normalize_url(url).encode()).hexdigest()[:24]

    def _checkout_submodules(self, parent_url: str, submodules: list[Submodule], dest: Path,
                             credentials: GitCredentials | None, deadline: float, depth: int) -> None:
        """Each submodule's recorded commit into its path under ``dest``, then theirs."""
        for module in submodules:
            url = _submodule_url(parent_url, module)
            where = f"submodule {module.path!r} ({safe_url(url)})"
            if depth > MAX_SUBMODULE_DEPTH:
                raise SourceError(f"{where} is nested more than {MAX_SUBMODULE_DEPTH} submodules deep; "
                                  "is there a cycle in .gitmodules?", kind=USER)
            # The parent's credentials go to the parent's host only.
            own = credentials if _same_origin(parent_url, url) else None
            target = dest / module.path
            try:
                with _repository_lock(self._repo_dir(url), deadline, url):
                    repo = _open_cache(self._repo_dir(url), normalize_url(url), deadline, url)
                    if not _has_commit(repo, module.commit, deadline):
                        with git_environment(url, own) as env:
                            _run(repo.git, "fetch", "--depth=1", "--no-tags", "--no-write-fetch-head", "--quiet",
                                 url, f"{module.commit}:refs/stepflow/commits/{module.commit}", env=env,
                                 deadline=deadline, url=url, credentials=own,
                                 what=f"fetch commit {module.commit[:12]}", missing=f"commit {module.commit}")
                    target.mkdir(parents=True, exist_ok=True)
                    _materialise(repo, module.commit, target, deadline, url)
                    nested = _submodules_of(repo, module.commit, deadline, url)
            except (SourceError, ConfigurationError) as exc:
                raise SourceError(f"{where} at commit {module.commit[:12]} could not be checked out: {exc}",
                                  reason=exc.reason, kind=exc.kind) from exc
            self._checkout_submodules(url, nested, target, own, deadline, depth + 1)

    @staticmethod
    def _fetch_commit(repo: git.Repo, url: str, ref: Ref, commit: str,
                      credentials: GitCredentials | None, env: dict[str, str],
                      deadline: float) -> None:
        """Shallow-fetch ``commit``: by its SHA, else by its ref when it is still the tip.

        By SHA, git lists no refs first: one request fewer on the push → Ready path (about
        half of a fetch over HTTP). Protocol v2 servers (all current ones) serve any
        reachable commit so; one that refuses (protocol v0 without
        ``uploadpack.allowReachableSHA1InWant``) gets the ref instead.
        """
        common = ["--depth=1", "--no-tags", "--no-write-fetch-head", "--quiet"]
        remote_ref = ref.remote_ref()
        try:
            _run(repo.git, "fetch", *common, url, f"{commit}:refs/stepflow/commits/{commit}",
                 env=env, deadline=deadline, url=url, credentials=credentials,
                 what=f"fetch commit {commit[:12]}", missing=f"commit {commit}")
            return
        except SourceError as exc:
            if exc.reason != REF_NOT_FOUND or remote_ref is None:
                raise
        local = f"refs/stepflow/{'heads' if ref.branch else 'tags'}/{ref.name}"
        _run(repo.git, "fetch", *common, url, f"+{remote_ref}:{local}", env=env,
             deadline=deadline, url=url, credentials=credentials,
             what=f"fetch {ref.describe()}", missing=ref.describe())
        if not _has_commit(repo, commit, deadline):
            raise SourceError(
                f"commit {commit[:12]} is no longer reachable from {ref.describe()} in "
                f"{safe_url(url)} (was the branch force-pushed?); the next reconcile "
                f"resolves the new tip", reason=REF_NOT_FOUND)
        _keep(repo, commit, deadline, url)


def _submodules_of(repo: git.Repo, commit: str, deadline: float, url: str) -> list[Submodule]:
    """The gitlinks of ``commit``'s tree, with their URLs from its ``.gitmodules``."""
    tree = _run(repo.git, "ls_tree", "-r", "-z", commit, deadline=deadline, url=url,
                what=f"list the files of {commit[:12]}")
    links = {}
    for entry in tree.split("\0"):
        meta, _, path = entry.partition("\t")
        fields = meta.split()
        if len(fields) == 3 and fields[0] == "160000":
            links[path] = fields[2]
    if not links:
        return []
    try:
        config = _run(repo.git, "config", "--blob", f"{commit}:.gitmodules", "-z", "--list",
                      deadline=deadline, url=url, what="read .gitmodules")
    except SourceError:
        config = ""
    names: dict[str, dict[str, str]] = {}
    for item in config.split("\0"):
        key, _, value = item.partition("\n")
        match = re.fullmatch(r"submodule\.(.+)\.(path|url)", key)
        if match:
            names.setdefault(match.group(1), {})[match.group(2)] = value
    urls = {entry["path"]: entry.get("url", "") for entry in names.values() if "path" in entry}
    modules = []
    for path, sha in sorted(links.items()):
        if not urls.get(path):
            raise SourceError(
                f"commit {commit[:12]} of {safe_url(url)} has a submodule at {path!r} with no URL in "
                ".gitmodules; add it (`git submodule add <url> <path>`) or remove the gitlink", kind=USER)
        modules.append(Submodule(path=path, url=urls[path], commit=sha))
    return modules


def _submodule_url(parent: str, module: Submodule) -> str:
    """The submodule's URL: a relative one (``./``, ``../``) against the parent's, as git does.

    A remote repository may not point at the operator's own disk (``file://``), and the URL
    must be one :func:`_check_url` accepts (scp-like ``git@host:path`` is not).
    """
    url = module.url
    if url.startswith(("./", "../")):
        parts = urlsplit(parent)
        url = urlunsplit(parts._replace(path=posixpath.normpath(posixpath.join(parts.path.rstrip("/"), url))))
    where = f"submodule {module.path!r} ({safe_url(url)})"
    if urlsplit(url).scheme.lower() not in _SCHEMES:
        raise SourceError(f"{where}: its URL must start with https://, http://, ssh:// or file:// (write "
                          "scp-like `git@host:path` as `ssh://git@host/path`) in .gitmodules", kind=USER,
                          reason="InvalidSourceURL")
    if urlsplit(url).scheme.lower() == "file" and urlsplit(parent).scheme.lower() != "file":
        raise SourceError(f"{where}: a remote repository's submodule may not be a local path; use the "
                          "submodule's https:// or ssh:// URL in .gitmodules", kind=USER, reason="InvalidSourceURL")
    if ".." in module.path.split("/") or module.path.startswith("/"):
        raise SourceError(f"{where}: its path leaves the checkout", kind=USER, reason="InvalidSourceURL")
    return url


def _same_origin(a: str, b: str) -> bool:
    """Same scheme, host and port: where the parent's credentials may be sent."""
    pa, pb = urlsplit(a), urlsplit(b)
    return (pa.scheme.lower(), pa.hostname, pa.port) == (pb.scheme.lower(), pb.hostname, pb.port)


def _check_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme.lower() not in _SCHEMES:
        raise ConfigurationError(
            f"spec.source.url {safe_url(url)!r} must start with https://, http://, ssh:// or "
            "file:// (write scp-like `git@host:path` as `ssh://git@host/path`)",
            reason="InvalidSourceURL")
    if parts.password is not None:
        raise ConfigurationError(
            f"spec.source.url {safe_url(url)!r} contains a password; remove it from the URL "
            "and put 'username'/'password' in a Secret named by spec.source.secretRef",
            reason="InvalidSourceURL")


def _parse_ls_remote(out: str) -> Iterator[tuple[str, str]]:
    for line in out.splitlines():
        sha, _, name = line.partition("\t")
        if _SHA1.match(sha) and name:
            yield name, sha


_LOCKS: dict[Path, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


@contextlib.contextmanager
def _repository_lock(repo_dir: Path, deadline: float, url: str) -> Iterator[None]:
    """Exclusive use of one cached repository across threads (lock) and processes (flock)."""
    with _LOCKS_GUARD:
        lock = _LOCKS.setdefault(repo_dir, threading.Lock())
    if not lock.acquire(timeout=max(deadline - time.monotonic(), 0.0)):
        raise _timeout(url, "wait for another fetch of the same repository")
    try:
        with flock(f"{repo_dir}.lock", wait=max(deadline - time.monotonic(), 0.0)) as held:
            if not held:
                raise _timeout(url, "wait for another process fetching the same repository")
            yield
    finally:
        lock.release()


def _open_cache(repo_dir: Path, key: str, deadline: float, url: str) -> git.Repo:
    """The bare cache repository, created on first use; host git config never applies."""
    fresh = not (repo_dir / "HEAD").exists()
    if fresh:
        _run(git.Git(), "init", "--bare", "--quiet", str(repo_dir), env=BASE_ENV,
             deadline=deadline, url=url, what="create the cache repository")
    repo = git.Repo(repo_dir)
    repo.git.update_environment(**BASE_ENV)
    if fresh:
        for name, value in (("stepflow.url", key),  # for humans reading the cache
                            ("gc.auto", "0"),  # we keep what we fetched; no gc pauses
                            ("transfer.fsckObjects", "true")):  # refuse malformed trees (../)
            _run(repo.git, "config", name, value, deadline=deadline, url=url,
                 what="configure the cache repository")
    return repo


def _has_commit(repo: git.Repo, commit: str, deadline: float) -> bool:
    try:
        repo.git.cat_file("-e", f"{commit}^{{commit}}",
                          kill_after_timeout=max(deadline - time.monotonic(), 0.1))
    except git.GitCommandError:
        return False
    return True


def _keep(repo: git.Repo, commit: str, deadline: float, url: str) -> None:
    """Pin a fetched commit under our namespace, so a moved branch does not orphan it."""
    _run(repo.git, "update_ref", f"refs/stepflow/commits/{commit}", commit,
         deadline=deadline, url=url, what="record the commit")


def _materialise(repo: git.Repo, commit: str, dest: Path, deadline: float, url: str) -> int | None:
    """Write the commit's tree into ``dest`` via ``git archive``; nothing of .git comes along.

    Returns the commit's time (``%ct``), which ``git archive`` gives every entry of a
    commit's tree; None when the tree is empty.
    """
    with tempfile.TemporaryFile(dir=Path(repo.git_dir).parent) as stream:
        _run(repo.git, "archive", "--format=tar", commit, output_stream=stream,
             deadline=deadline, url=url, what=f"read the files of {commit[:12]}")
        stream.seek(0)
        with tarfile.open(fileobj=stream) as tar:
            if hasattr(tarfile, "tar_filter"):  # Python >= 3.11.4 (and the 3.10/3.9 backports)
                tar.extractall(dest, filter="tar")
            else:  # the same refusals by hand: no absolute paths, nothing outside dest
                root = dest.resolve()
                for member in tar.getmembers():
                    target = (root / member.name).resolve()
                    if member.name.startswith("/") or (target != root and root not in target.parents):
                        raise SourceError(f"commit {commit[:12]} holds a path outside the checkout: "
                                          f"{member.name!r}; it was refused")
                tar.extractall(dest)
            members = tar.getmembers()
    return int(members[0].mtime) if members else None


def _run(cmd: git.Git, command: str, *args: str, deadline: float, url: str, what: str,
         env: dict[str, str] | None = None, credentials: GitCredentials | None = None,
         missing: str | None = None, output_stream: object = None) -> str:
    """One git call under the deadline; failures become a classified :class:`SourceError`."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise _timeout(url, what)
    kwargs: dict[str, object] = {"kill_after_timeout": remaining}
    if env is not None:
        kwargs["env"] = env
    if output_stream is not None:
        kwargs["output_stream"] = output_stream
    try:
        result = getattr(cmd, command)(*args, **kwargs)
    except git.GitCommandNotFound as exc:
        raise SourceError("the git executable was not found; install git where stepflow runs (the operator's image, "
                          "or this machine for `stepflow up`)",
                          reason=GIT_OPERATION_FAILED) from exc
    except git.GitCommandError as exc:
        raise _classify(_stderr_of(exc), url=url, what=what, credentials=credentials,
                        missing=missing) from None
    return result if isinstance(result, str) else ""


def _timeout(url: str, what: str) -> SourceError:
    return SourceError(
        f"timed out trying to {what} at {safe_url(url)}; raise spec.source.timeout or check "
        f"that the server answers", reason=TIMEOUT)


_AUTH_PATTERNS = (
    "authentication failed", "could not read username", "could not read password",
    "terminal prompts disabled", "permission denied (publickey", "access denied",
    "http basic", "the requested url returned error: 401",
    "the requested url returned error: 403", "invalid username or password",
    "host key verification failed",
)
_MISSING_PATTERNS = (
    "couldn't find remote ref", "not our ref", "unadvertised object",
    "no such remote ref", "remote error: upload-pack: not our ref",
)


def _classify(stderr: str, *, url: str, what: str, credentials: GitCredentials | None,
              missing: str | None) -> SourceError:
    text = _redact(stderr, credentials)
    lowered = text.lower()
    where = safe_url(url)
    if "did not complete in" in lowered and lowered.startswith("timeout"):
        return _timeout(url, what)
    if "host key verification failed" in lowered:
        return SourceError(
            f"the host key of {where} is not in the Secret's 'known_hosts'; add the output "
            f"of `ssh-keyscan <host>` to it", reason=AUTHENTICATION_FAILED)
    if any(p in lowered for p in _AUTH_PATTERNS):
        hint = ("check 'username'/'password' in the Secret named by spec.source.secretRef"
                if credentials is not None else
                "the repository needs credentials: create a Secret and set "
                "spec.source.secretRef")
        return SourceError(f"authentication to {where} failed: {hint}",
                           reason=AUTHENTICATION_FAILED)
    if missing is not None and any(p in lowered for p in _MISSING_PATTERNS):
        return SourceError(f"{missing} does not exist in {where}; check spec.source.ref or push it",
                           reason=REF_NOT_FOUND)
    detail = _last_line(text)
    return SourceError(
        f"could not {what} at {where}: {detail}; check spec.source.url and that the "
        f"repository is reachable from where stepflow runs (the operator's pod, or this machine for "
        f"`stepflow up`)", reason=GIT_OPERATION_FAILED)


_USERINFO = re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]+@")


def _redact(text: str, credentials: GitCredentials | None) -> str:
    text = _USERINFO.sub(r"\1", text)
    for secret in credentials.secrets() if credentials else ():
        text = text.replace(secret, "***")
    return text


_BOILERPLATE = ("could not read from remote repository", "please make sure you have",
                "and the repository exists")


def _last_line(text: str) -> str:
    """The line of git's stderr that says what went wrong (not its generic advice)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    specific = [line for line in lines
                if not any(b in line.lower() for b in _BOILERPLATE)]
    chosen = (specific or lines or ["git failed without a message"])[0]
    return chosen.removeprefix("fatal: ").removeprefix("error: ")[:300]


def _stderr_of(exc: git.GitCommandError) -> str:
    """git's own stderr; GitPython wraps it as ``\n  stderr: '<text>'``."""
    text = exc.stderr if isinstance(exc.stderr, str) else str(exc.stderr or "")
    match = re.match(r"^\s*stderr: '(.*)'\s*$", text, re.DOTALL)
    return match.group(1) if match else text
