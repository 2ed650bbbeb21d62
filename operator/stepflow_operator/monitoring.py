"""The monitoring port: ``/metrics`` for Prometheus, ``/healthz`` and ``/readyz`` for the kubelet.

Served by a thread from process start, before leader election, so a standby replica is
alive (``/healthz``) and scraped, but not ready (``/readyz`` answers 503 until this process
runs the handlers): the receiver Service then routes webhooks to the active replica only.
"""

from __future__ import annotations

import threading
from http.server import ThreadingHTTPServer

from prometheus_client import REGISTRY
from prometheus_client.exposition import MetricsHandler

#: Set once this process runs kopf's handlers (it is the active replica).
ACTIVE = threading.Event()

_lock = threading.Lock()
_server: ThreadingHTTPServer | None = None


class _Handler(MetricsHandler):
    registry = REGISTRY

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            super().do_GET()
        elif path == "/healthz":
            self._plain(200, "ok\n")
        elif path == "/readyz":
            self._plain(200, "active\n") if ACTIVE.is_set() else self._plain(503, "standby\n")
        else:
            self._plain(404, "not found: /metrics, /healthz, /readyz\n")

    def _plain(self, status: int, text: str) -> None:
        body = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def serve(address: str) -> None:
    """Serve on ``host:port`` in a daemon thread; a second call does nothing."""
    global _server
    with _lock:
        if _server is not None:
            return
        host, _, port = address.rpartition(":")
        _server = ThreadingHTTPServer((host or "0.0.0.0", int(port)), _Handler)
        _server.daemon_threads = True
        threading.Thread(target=_server.serve_forever, name="monitoring", daemon=True).start()
