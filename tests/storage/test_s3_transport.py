"""The signed-PUT transport against a local HTTP server that answers as S3 would.

No S3 server needed: these pin what the transport sends (SigV4 over the body's SHA-256)
and when it retries, stops, or hands a request back to boto3.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from botocore.credentials import Credentials

from stepflow.storage import s3_transport
from stepflow.storage.s3_clients import ATTEMPTS, Connection, connection_for

Answer = tuple[int, bytes]  # status and XML body; status 0: close the connection unanswered


class FakeS3:
    """Answers each PUT with the next planned answer; records path and headers."""

    def __init__(self, answers: Callable[[int], Answer]) -> None:
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_PUT(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                outer.requests.append((self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                status, xml = answers(len(outer.requests))
                if status == 0:
                    self.close_connection = True
                    self.connection.close()
                    return
                self.send_response(status)
                if status == 200:
                    self.send_header("ETag", '"etag-1"')
                self.send_header("Content-Length", str(len(xml)))
                self.end_headers()
                self.wfile.write(xml)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake_s3() -> Iterator[Callable[[Callable[[int], Answer]], FakeS3]]:
    servers: list[FakeS3] = []

    def start(answers: Callable[[int], Answer]) -> FakeS3:
        servers.append(FakeS3(answers))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


@pytest.fixture(autouse=True)
def no_backoff(monkeypatch):
    monkeypatch.setattr(s3_transport, "_backoff", lambda attempt: None)


def _target(url: str) -> s3_transport.PutTarget:
    credentials = Credentials("AKIDEXAMPLE", "secret-example")
    connection = Connection(client=None, credentials=credentials, ca_bundle=None)
    return s3_transport.PutTarget(url_prefix=f"{url}/bucket/", region="us-east-1", service="s3",
                                  credentials=credentials, connection=connection)


def _error(code: str, message: str = "no") -> bytes:
    return f"<Error><Code>{code}</Code><Message>{message}</Message></Error>".encode()


def test_a_put_is_signed_over_the_bodys_sha256(fake_s3):
    server = fake_s3(lambda n: (200, b""))
    data = b"hello"
    digest = hashlib.sha256(data).hexdigest()
    answer = s3_transport.put(_target(server.url), "prefix/a key~1", data, digest)
    assert answer.ok and answer.etag == "etag-1"
    ((path, headers, body),) = server.requests
    assert path == "/bucket/prefix/a%20key~1" and body == data
    assert headers["x-amz-content-sha256"] == digest
    assert headers["x-amz-meta-sha256"] == digest
    assert headers["authorization"].startswith(
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/") and "/us-east-1/s3/aws4_request" in headers["authorization"]


def test_throttling_and_dropped_connections_are_retried(fake_s3):
    server = fake_s3(lambda n: {1: (503, _error("SlowDown")), 2: (0, b"")}.get(n, (200, b"")))
    answer = s3_transport.put(_target(server.url), "k", b"x", hashlib.sha256(b"x").hexdigest())
    assert answer.ok and len(server.requests) == 3


def test_retries_are_bounded_and_the_last_answer_says_why(fake_s3):
    server = fake_s3(lambda n: (503, _error("SlowDown", "Please reduce your request rate")))
    answer = s3_transport.put(_target(server.url), "k", b"x", hashlib.sha256(b"x").hexdigest())
    assert not answer.ok and answer.retryable
    assert (answer.status, answer.code, answer.message) == (503, "SlowDown", "Please reduce your request rate")
    assert len(server.requests) == ATTEMPTS


def test_a_refusal_is_not_retried(fake_s3):
    server = fake_s3(lambda n: (403, _error("AccessDenied")))
    answer = s3_transport.put(_target(server.url), "k", b"x", hashlib.sha256(b"x").hexdigest())
    assert (answer.status, answer.code, answer.retryable) == (403, "AccessDenied", False)
    assert len(server.requests) == 1


def test_a_region_redirect_stops_at_once_for_boto3_to_follow(fake_s3):
    server = fake_s3(lambda n: (301, _error("PermanentRedirect")))
    answer = s3_transport.put(_target(server.url), "k", b"x", hashlib.sha256(b"x").hexdigest())
    assert answer.redirected and not answer.ok and len(server.requests) == 1


def test_no_answer_at_all_is_an_error_answer(fake_s3):
    server = fake_s3(lambda n: (0, b""))
    answer = s3_transport.put(_target(server.url), "k", b"x", hashlib.sha256(b"x").hexdigest())
    assert answer.status is None and answer.error is not None and len(server.requests) == ATTEMPTS


def test_the_target_is_what_boto3_would_send_and_nothing_goes_on_the_wire(fake_s3, monkeypatch):
    server = fake_s3(lambda n: (500, b""))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDTARGET")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret-target")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-3")
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    target = s3_transport.find_put_target(connection_for(server.url), "my-bucket")
    assert target is not None and server.requests == []
    assert (target.url_prefix, target.region, target.service) == (f"{server.url}/my-bucket/", "eu-west-3", "s3")
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.invalid:3128")
    monkeypatch.setenv("NO_PROXY", "")
    assert s3_transport.find_put_target(connection_for(server.url), "my-bucket") is None
