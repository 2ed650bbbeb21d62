"""AWS for tests: moto in server mode, the one stand-in the house rules allow.

AWS itself cannot be reached from here, so SageMaker is moto's ``ThreadedMotoServer`` run
as its own process (``python -m moto.server``), in its own process group on a free
loopback port, like every other test server. Clients reach it the way users reach AWS:
through boto3's standard configuration (``AWS_ENDPOINT_URL_SAGEMAKER``, region,
credentials in the environment), never a stepflow variable.

What moto lacks of SageMaker Pipelines (see ``MOTO_LACKS``) is covered with botocore's
``Stubber``, whose requests and responses are validated against botocore's own service
model; :func:`sagemaker_client` keeps parameter validation on (botocore's default), so a
request the real API would refuse fails here too.
"""

from __future__ import annotations

import http.client
import os
import secrets
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .procs import ServerFailed, ServerProcess, free_port, start_http_server

REGION = "us-east-1"
#: moto's fixed account (its ARNs carry it).
ACCOUNT = "123456789012"
#: SageMaker Pipelines calls the pinned moto (pyproject's dev extra) does not implement:
#: ``tests/backends/sagemaker/test_moto_coverage.py`` checks this list against the server.
MOTO_LACKS = ("ListPipelineExecutionSteps", "StopPipelineExecution", "RetryPipelineExecution")


def moto_installed() -> bool:
    try:
        import moto.server  # noqa: F401
    except ImportError:
        return False
    return True


class MotoServer:
    """The ``moto`` fixture: ``endpoint_url``, ``region``, ``env()``, ``client(service)``,
    ``reset()``, ``logs_tail(n)``."""

    def __init__(self, workdir: Path, host: str = "127.0.0.1") -> None:
        self.workdir = Path(workdir)
        self.host = host
        self.region = REGION
        self.account = ACCOUNT
        # moto accepts any key; a fresh one shows none is ever logged or written anywhere.
        self.access_key = "AKIA" + secrets.token_hex(8).upper()
        self.secret_key = secrets.token_hex(20)
        self.endpoint_url = ""
        self.process: ServerProcess | None = None
        self.ready_seconds: float | None = None

    def start(self, timeout: float = 30.0, attempts: int = 3) -> MotoServer:
        t0 = time.monotonic()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MOTO_"))}
        self.process, port = start_http_server(
            "moto", lambda port: [sys.executable, "-m", "moto.server", "--host", self.host, "--port", str(port)],
            self.workdir / "logs" / "moto.log", host=self.host, health_path="/moto-api/data.json", env=env,
            timeout=timeout, attempts=attempts)
        self.endpoint_url = f"http://{self.host}:{port}"
        self.ready_seconds = time.monotonic() - t0
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    def reset(self) -> None:
        """Forget every resource (moto's reset API): each test starts from an empty account."""
        conn = http.client.HTTPConnection(self.host, int(self.endpoint_url.rsplit(":", 1)[1]), timeout=10)
        try:
            conn.request("POST", "/moto-api/reset")
            if conn.getresponse().status != 200:
                raise ServerFailed("moto refused /moto-api/reset")
        finally:
            conn.close()

    def env(self) -> dict[str, str]:
        """boto3's standard configuration pointing at this server (for a child or monkeypatch)."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_ENDPOINT_URL_SAGEMAKER": self.endpoint_url,
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def client(self, service: str = "sagemaker") -> Any:
        """A boto3 client with botocore's parameter validation on (its default, kept)."""
        import boto3
        from botocore.config import Config

        return boto3.client(service, endpoint_url=self.endpoint_url, region_name=self.region,
                            aws_access_key_id=self.access_key, aws_secret_access_key=self.secret_key,
                            config=Config(parameter_validation=True, retries={"max_attempts": 2}))

    def logs_tail(self, n: int = 40) -> str:
        if self.process is None:
            return ""
        return f"--- moto ({self.process.log_path}) ---\n{self.process.tail(n)}"

    @property
    def processes(self) -> list[ServerProcess]:
        return [self.process] if self.process is not None else []


def _wire(value: Any) -> Any:
    """A response value as JSON protocol carries it (timestamps as epoch seconds)."""
    from datetime import datetime

    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, dict):
        return {k: _wire(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_wire(v) for v in value]
    return value


class StubbedCalls:
    """moto's SageMaker, plus answers to the calls it lacks, for clients in other processes.

    An HTTP front on a free loopback port: requests for an operation with queued answers
    are answered here, everything else is forwarded to moto unchanged. It is botocore's
    ``Stubber`` over the wire: each queued response is validated against the operation's
    output shape in botocore's service model when queued (the check ``Stubber.add_response``
    makes), and each request it answers against the input shape, so no answer is one the real
    API could not give and no request one it would refuse. In-process tests use ``Stubber``
    itself; this serves the operator, which runs as its own process.
    """

    def __init__(self, moto: MotoServer) -> None:
        import botocore.session

        self.moto = moto
        self.model = botocore.session.get_session().get_service_model("sagemaker")
        self.endpoint_url = ""
        #: (operation, params) of every request answered here, in order.
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self._answers: dict[str, list[dict[str, Any]]] = {}
        self._repeat: set[str] = set()
        self._lock = threading.Lock()
        self._server: Any = None

    def answer(self, operation: str, response: dict[str, Any] | Callable[[dict[str, Any]], dict[str, Any]], *,
               repeat: bool = True) -> None:
        """Answer ``operation`` with ``response`` (validated now), or with what ``response(params)``
        returns (validated when it is called); ``repeat``: until replaced."""
        if not callable(response):
            self.check_response(operation, response)
        with self._lock:
            self._answers[operation] = [response] if repeat else [*self._answers.get(operation, []), response]
            if repeat:
                self._repeat.add(operation)
            else:
                self._repeat.discard(operation)

    def check_response(self, operation: str, response: dict[str, Any]) -> None:
        """Refuse a response the real API could not give (botocore's output shape)."""
        from botocore.validate import ParamValidator

        report = ParamValidator().validate(response, self.model.operation_model(operation).output_shape)
        if report.has_errors():
            raise ValueError(f"{operation} response is not one SageMaker could give: {report.generate_report()}")

    def forget(self, operation: str) -> None:
        """Forward ``operation`` to moto again."""
        with self._lock:
            self._answers.pop(operation, None)

    def _take(self, operation: str) -> Any:
        with self._lock:
            queue = self._answers.get(operation)
            if not queue:
                return None
            return queue[0] if operation in self._repeat else queue.pop(0)

    def start(self) -> StubbedCalls:
        import json
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        from botocore.validate import ParamValidator

        front = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # quiet: the test reports what matters
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                operation = (self.headers.get("X-Amz-Target") or "").rsplit(".", 1)[-1]
                answer = front._take(operation)
                if answer is None:
                    return self._forward(body)
                params = json.loads(body or b"{}")
                report = ParamValidator().validate(params, front.model.operation_model(operation).input_shape)
                front.requests.append((operation, params))
                if report.has_errors():
                    return self._send(400, {"__type": "ValidationException", "message": report.generate_report()})
                if callable(answer):
                    answer = answer(params)
                    front.check_response(operation, answer)
                return self._send(200, _wire(answer))

            def _send(self, code: int, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/x-amz-json-1.1")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _forward(self, body: bytes) -> None:
                port = int(front.moto.endpoint_url.rsplit(":", 1)[1])
                conn = http.client.HTTPConnection(front.moto.host, port, timeout=30)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                    conn.request("POST", self.path, body=body, headers=headers)
                    reply = conn.getresponse()
                    data = reply.read()
                finally:
                    conn.close()
                self.send_response(reply.status)
                for key, value in reply.getheaders():
                    if key.lower() not in ("content-length", "connection", "server", "date"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer((self.moto.host, free_port()), Handler)
        self.endpoint_url = f"http://{self.moto.host}:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, name="sagemaker-front", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def env(self) -> dict[str, str]:
        return {**self.moto.env(), "AWS_ENDPOINT_URL_SAGEMAKER": self.endpoint_url}
