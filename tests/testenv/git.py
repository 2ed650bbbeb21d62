"""Real git remotes for tests: bare repositories over file:// and smart HTTP on loopback.

One HTTP server per session (a thread in the test process) runs ``git http-backend`` as a
CGI for every repository under its root:

* ``http://127.0.0.1:<port>/anon/<name>.git``     anonymous fetch and push
* ``http://127.0.0.1:<port>/private/<name>.git``  HTTP basic auth; only the credentials
  registered with ``GitRemote.http_url_with_auth(user, password)`` are accepted (401
  otherwise, as a real forge answers).

The same paths are served over HTTPS on a second port (started on first use), with a
certificate from a CA generated for the session: ``GitRemote.https_url``,
``https_url_with_auth(...)``, and ``ca_file`` for ``GIT_SSL_CAINFO`` / ``http.sslCAInfo``.
"""

from __future__ import annotations

import base64
import hmac
import os
import re
import ssl
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from .procs import free_port

# No user or system git configuration leaks into the tests (signing, hooks, templates...).
GIT_ENV = {
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_AUTHOR_NAME": "stepflow tests",
    "GIT_AUTHOR_EMAIL": "tests@stepflow.invalid",
    "GIT_COMMITTER_NAME": "stepflow tests",
    "GIT_COMMITTER_EMAIL": "tests@stepflow.invalid",
}


def git_env() -> dict[str, str]:
    return {**os.environ, **GIT_ENV}


def run_git(*args: str, cwd: Path | str | None = None, input: bytes | None = None) -> str:  # noqa: A002
    proc = subprocess.run(["git", *args], cwd=cwd, env=git_env(), input=input,
                          capture_output=True, timeout=120)
    if proc.returncode != 0:
        raise RuntimeError(
            f"git {' '.join(args)} failed ({proc.returncode}) in {cwd}:\n"
            f"{proc.stdout.decode(errors='replace')}{proc.stderr.decode(errors='replace')}"
        )
    return proc.stdout.decode(errors="replace").strip()


class _Handler(BaseHTTPRequestHandler):
    server: _GitHTTPServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args) -> None:  # noqa: A002, ANN002
        self.server.log(f"{self.address_string()} {format % args}")

    def do_GET(self) -> None:  # noqa: N802
        self._serve()

    def do_POST(self) -> None:  # noqa: N802
        self._serve()

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _reply(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _serve(self) -> None:
        path, _, query = self.path.partition("?")
        m = re.match(r"^/(anon|private)(/[^/]+\.git)(/.*)?$", path)
        if not m:
            self._reply(404, b"not found\n")
            return
        area, repo, rest = m.group(1), m.group(2), m.group(3) or ""
        body = self._read_body()
        remote_user = ""
        if area == "private":
            user = self.server.check_auth(repo.strip("/").removesuffix(".git"),
                                          self.headers.get("Authorization", ""))
            if user is None:
                self._reply(401, b"authentication required\n",
                            {"WWW-Authenticate": 'Basic realm="stepflow-test-git"'})
                return
            remote_user = user
        env = {
            **git_env(),
            "GIT_PROJECT_ROOT": str(self.server.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "PATH_INFO": repo + rest,
            "QUERY_STRING": query,
            "REQUEST_METHOD": self.command,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_ADDR": self.client_address[0],
            "REMOTE_USER": remote_user,
            "SERVER_PROTOCOL": "HTTP/1.1",
        }
        for key, value in self.headers.items():
            env["HTTP_" + key.upper().replace("-", "_")] = value
        if "Git-Protocol" in self.headers:
            env["GIT_PROTOCOL"] = self.headers["Git-Protocol"]
        proc = subprocess.run(["git", "http-backend"], input=body, env=env,
                              capture_output=True, timeout=120)
        if proc.stderr:
            self.server.log(f"http-backend: {proc.stderr.decode(errors='replace').strip()}")
        head, sep, payload = proc.stdout.partition(b"\r\n\r\n")
        if not sep:
            head, sep, payload = proc.stdout.partition(b"\n\n")
        status = 200
        headers: dict[str, str] = {}
        for line in head.decode("latin-1").splitlines():
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.strip().split()[0])
            elif name:
                headers[name.strip()] = value.strip()
        self._reply(status, payload, headers)


class _GitHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, root: Path, port: int, log_path: Path) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.root = root
        self.log_path = log_path
        self._log_lock = threading.Lock()
        self.credentials: dict[str, dict[str, str]] = {}

    def log(self, line: str) -> None:
        with self._log_lock, open(self.log_path, "a") as f:
            f.write(f"{time.strftime('%H:%M:%S')} {line}\n")

    def check_auth(self, repo: str, header: str) -> str | None:
        allowed = self.credentials.get(repo, {})
        if not header.startswith("Basic "):
            return None
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except ValueError:
            return None
        expected = allowed.get(user)
        if expected is not None and hmac.compare_digest(expected, password):
            return user
        self.log(f"rejected credentials for user {user!r} on {repo}")
        return None


class GitServer:
    """The session's git HTTP server (``git_server`` fixture)."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = Path(workdir)
        self.root = self.workdir / "repos"
        self.root.mkdir(parents=True, exist_ok=True)
        self.log_path = self.workdir / "git-http.log"
        self.log_path.touch()
        self._httpd: _GitHTTPServer | None = None
        self._httpsd: _GitHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._tls_lock = threading.Lock()
        self._credentials: dict[str, dict[str, str]] = {}
        self.port = 0
        self.tls_port = 0
        self.ca_file = ""

    def start(self) -> GitServer:
        self._httpd = self._bind()
        self.port = self._httpd.server_address[1]
        self._httpd.credentials = self._credentials
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="git-http",
                                        kwargs={"poll_interval": 0.1}, daemon=True)
        self._thread.start()
        return self

    def _bind(self, attempts: int = 5) -> _GitHTTPServer:
        """A server on a free port (another process may take a port between probe and bind)."""
        for attempt in range(attempts):
            try:
                return _GitHTTPServer(self.root, free_port(), self.log_path)
            except OSError:
                if attempt == attempts - 1:
                    raise
        raise AssertionError("unreachable")

    def _start_tls(self) -> None:
        with self._tls_lock:
            if self._httpsd is not None:
                return
            from .kube import generate_pki  # same openssl recipe: CA + server cert for 127.0.0.1

            pki = self.workdir / "pki"
            generate_pki(pki)
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(str(pki / "server.crt"), str(pki / "server.key"))
            httpsd = self._bind()
            self.tls_port = httpsd.server_address[1]
            httpsd.credentials = self._credentials
            httpsd.socket = ctx.wrap_socket(httpsd.socket, server_side=True)
            threading.Thread(target=httpsd.serve_forever, name="git-https",
                             kwargs={"poll_interval": 0.1}, daemon=True).start()
            self.ca_file = str(pki / "ca.crt")
            self._httpsd = httpsd

    @property
    def https_base_url(self) -> str:
        self._start_tls()
        return f"https://127.0.0.1:{self.tls_port}"

    def stop(self) -> None:
        for attr in ("_httpd", "_httpsd"):
            server = getattr(self, attr)
            if server is not None:
                server.shutdown()
                server.server_close()
                setattr(self, attr, None)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def add_credentials(self, repo: str, user: str, password: str) -> None:
        self._credentials.setdefault(repo, {})[user] = password

    def logs_tail(self, n: int = 40) -> str:
        lines = self.log_path.read_text(errors="replace").splitlines()
        return f"--- git http ({self.log_path}) ---\n" + "\n".join(lines[-n:])


class GitRemote:
    """The ``git_remote`` fixture: a bare repository with a work clone to commit from.

    ``path`` (bare repo), ``file_url``, ``url`` (anonymous smart-HTTP on loopback, push
    allowed), ``branch`` ("main"), ``commit(files, message, branch)`` -> sha,
    ``head(branch)`` -> sha, ``tag(name, rev)``, ``http_url_with_auth(user, password)``;
    over TLS: ``https_url``, ``https_url_with_auth(user, password)``, ``ca_file``.
    """

    def __init__(self, server: GitServer, name: str, branch: str = "main") -> None:
        self.server = server
        self.name = name
        self.branch = branch
        self.path = server.root / f"{name}.git"
        self.work = server.workdir / "work" / name
        run_git("init", "--quiet", "--bare", f"--initial-branch={branch}", str(self.path))
        run_git("config", "http.receivepack", "true", cwd=self.path)
        run_git("config", "uploadpack.allowReachableSHA1InWant", "true", cwd=self.path)
        self.work.mkdir(parents=True)
        run_git("init", "--quiet", f"--initial-branch={branch}", cwd=self.work)
        run_git("remote", "add", "origin", str(self.path), cwd=self.work)

    @property
    def file_url(self) -> str:
        return self.path.as_uri()

    @property
    def url(self) -> str:
        return f"{self.server.base_url}/anon/{self.name}.git"

    def http_url_with_auth(self, user: str, password: str) -> str:
        """Register credentials and return the URL (without them) that requires them.

        Any other user/password gets 401; several pairs may be registered.
        """
        self.server.add_credentials(self.name, user, password)
        return f"{self.server.base_url}/private/{self.name}.git"

    @property
    def https_url(self) -> str:
        """Anonymous smart HTTP over TLS; trust ``ca_file`` (e.g. GIT_SSL_CAINFO)."""
        return f"{self.server.https_base_url}/anon/{self.name}.git"

    def https_url_with_auth(self, user: str, password: str) -> str:
        """As http_url_with_auth, over TLS (the certificate is signed by ``ca_file``)."""
        self.server.add_credentials(self.name, user, password)
        return f"{self.server.https_base_url}/private/{self.name}.git"

    @property
    def ca_file(self) -> str:
        """CA bundle that signed the HTTPS server's certificate (starts that server)."""
        self.server._start_tls()
        return self.server.ca_file

    def _remote_has(self, branch: str) -> bool:
        out = run_git("ls-remote", "--heads", "origin", f"refs/heads/{branch}", cwd=self.work)
        return bool(out)

    def commit(self, files: dict[str, str | bytes | None], message: str = "test commit",
               branch: str | None = None) -> str:
        """Write (str/bytes) or delete (None) files on ``branch``, commit, push; return sha."""
        b = branch or self.branch
        if self._remote_has(b):
            run_git("fetch", "--quiet", "origin", f"+refs/heads/{b}:refs/remotes/origin/{b}",
                    cwd=self.work)
            run_git("checkout", "--quiet", "-B", b, f"origin/{b}", cwd=self.work)
        elif self._remote_has(self.branch):
            run_git("fetch", "--quiet", "origin",
                    f"+refs/heads/{self.branch}:refs/remotes/origin/{self.branch}", cwd=self.work)
            run_git("checkout", "--quiet", "-B", b, f"origin/{self.branch}", cwd=self.work)
        else:
            run_git("checkout", "--quiet", "--orphan", b, cwd=self.work)
            run_git("rm", "-r", "--quiet", "--cached", "--ignore-unmatch", ".", cwd=self.work)
        for rel, content in files.items():
            target = self.work / rel
            if content is None:
                run_git("rm", "--quiet", "--ignore-unmatch", "-r", "--", rel, cwd=self.work)
                if target.exists():
                    target.unlink()
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                target.write_bytes(content)
            else:
                target.write_text(content)
        run_git("add", "--all", cwd=self.work)
        run_git("commit", "--quiet", "--allow-empty", "-m", message, cwd=self.work)
        run_git("push", "--quiet", "origin", f"HEAD:refs/heads/{b}", cwd=self.work)
        return run_git("rev-parse", "HEAD", cwd=self.work)

    def tag(self, name: str, rev: str | None = None, message: str | None = None) -> str:
        """Create a tag in the bare repository (annotated when ``message`` is given).

        Returns what the tag ref points at (the tag object's sha for an annotated tag).
        """
        target = rev or self.head()
        args = ["tag", "-f"] + (["-a", "-m", message] if message else []) + [name, target]
        run_git(*args, cwd=self.path)
        return run_git("rev-parse", f"refs/tags/{name}", cwd=self.path)

    def head(self, branch: str | None = None) -> str:
        return run_git("rev-parse", f"refs/heads/{branch or self.branch}", cwd=self.path)

    def __repr__(self) -> str:
        return f"<GitRemote {self.path}>"
