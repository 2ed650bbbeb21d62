"""A git server for the kind suite: ``git http-backend`` (smart HTTP) behind Python's HTTP
server, plus a ``push`` command that takes a bundle on stdin. Standard library and git only:
it runs in a pod of the operator image, mounted from a ConfigMap.

Why smart HTTP and not git's "dumb" protocol (static files after ``update-server-info``):
the operator fetches with ``--depth=1``, and git refuses shallow fetches over dumb HTTP
("dumb http transport does not support shallow capabilities").

Why pushes arrive as bundles through ``kubectl exec -i``: the host never opens a connection
into the cluster's network; a bundle is one file, and fetching it into the served
repository updates its refs atomically, so a reconcile never sees half a push.

    python gitserver.py serve --root /srv/git --port 8080     # http://HOST:8080/<name>.git
    git bundle create - main | python gitserver.py push --root /srv/git --repo flow
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

_REPO = re.compile(r"^(/[A-Za-z0-9._-]+\.git)(/.*)?$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
#: No user or system git configuration: what is served depends on the repository alone.
GIT_ENV = {"GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull, "GIT_TERMINAL_PROMPT": "0"}


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802
        self._serve()

    def do_POST(self) -> None:  # noqa: N802
        self._serve()

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        sys.stderr.write(f"{self.address_string()} {format % args}\n")

    def _body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                pass
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _reply(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _serve(self) -> None:
        path, _, query = self.path.partition("?")
        match = _REPO.match(path)
        if not match:
            self._reply(404, b"not found\n", {"Content-Type": "text/plain"})
            return
        body = self._body()
        env = {
            "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
            **GIT_ENV,
            "GIT_PROJECT_ROOT": str(self.server.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "REQUEST_METHOD": self.command,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_ADDR": self.client_address[0],
            "SERVER_PROTOCOL": "HTTP/1.1",
        }
        # HTTP_CONTENT_ENCODING (gzip'd fetch negotiations) and the protocol v2 header.
        for name, value in self.headers.items():
            env["HTTP_" + name.upper().replace("-", "_")] = value
        if "Git-Protocol" in self.headers:
            env["GIT_PROTOCOL"] = self.headers["Git-Protocol"]
        proc = subprocess.run(["git", "http-backend"], input=body, env=env, capture_output=True,
                              timeout=120, check=False)
        if proc.stderr:
            sys.stderr.write(f"http-backend: {proc.stderr.decode(errors='replace').strip()}\n")
        head, sep, payload = proc.stdout.partition(b"\r\n\r\n")
        if not sep:
            head, _, payload = proc.stdout.partition(b"\n\n")
        status, headers = 200, {}
        for line in head.decode("latin-1").splitlines():
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.split()[0])
            elif name:
                headers[name.strip()] = value.strip()
        self._reply(status, payload, headers)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, root: Path, address: tuple[str, int]) -> None:
        self.root = root
        super().__init__(address, _Handler)


def serve(root: Path, host: str, port: int) -> None:
    root.mkdir(parents=True, exist_ok=True)
    server = _Server(root, (host, port))
    sys.stderr.write(f"serving {root} on http://{host}:{server.server_port}/\n")
    server.serve_forever()


def push(root: Path, repo: str, bundle: bytes) -> None:
    """Make ``root/<repo>.git``'s branches those of the bundle, creating the repository."""
    if not _NAME.match(repo):
        raise SystemExit(f"repository name {repo!r}: letters, digits, '.', '_' and '-' only")
    target = root / f"{repo}.git"
    env = {**os.environ, **GIT_ENV}
    root.mkdir(parents=True, exist_ok=True)
    if not target.exists():
        subprocess.run(["git", "init", "--quiet", "--bare", "--initial-branch=main", str(target)],
                       env=env, check=True)
    with tempfile.NamedTemporaryFile(suffix=".bundle", dir=root) as handle:
        handle.write(bundle)
        handle.flush()
        subprocess.run(["git", "-C", str(target), "fetch", "--quiet", "--force", handle.name,
                        "+refs/heads/*:refs/heads/*"], env=env, check=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="gitserver.py", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    serving = commands.add_parser("serve", help="serve every <name>.git under --root")
    serving.add_argument("--root", type=Path, required=True)
    serving.add_argument("--host", default="0.0.0.0")
    serving.add_argument("--port", type=int, default=8080)
    pushing = commands.add_parser("push", help="fetch a bundle from stdin into <root>/<repo>.git")
    pushing.add_argument("--root", type=Path, required=True)
    pushing.add_argument("--repo", required=True)
    args = parser.parse_args(argv)
    if args.command == "serve":
        serve(args.root, args.host, args.port)
    else:
        push(args.root, args.repo, sys.stdin.buffer.read())


if __name__ == "__main__":
    main()
