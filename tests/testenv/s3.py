"""A real S3-compatible server for tests: versitygw with its posix backend.

One server per session on a free loopback port; each test gets a fresh bucket. The posix
backend keeps object metadata (ETag, content type, user metadata) in user extended
attributes of the files under its data dir; when the temp dir's filesystem refuses user
xattrs, the server is started with ``--sidecar`` (metadata in files of a side directory).
"""

from __future__ import annotations

import os
import re
import secrets
import tempfile
import time
from pathlib import Path
from typing import Any

from .binaries import bin_path
from .procs import ServerProcess, start_http_server

REGION = "us-east-1"


def user_xattrs_supported(directory: Path) -> bool:
    try:
        with tempfile.NamedTemporaryFile(dir=directory) as f:
            os.setxattr(f.name, "user.stepflow-probe", b"1")
            return os.getxattr(f.name, "user.stepflow-probe") == b"1"
    except OSError:
        return False


def boto3_client(endpoint_url: str, access_key: str, secret_key: str, region: str = REGION):
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        region_name=region,
        config=Config(
            s3={"addressing_style": "path"},
            retries={"max_attempts": 3, "mode": "standard"},
            connect_timeout=5,
            read_timeout=60,
        ),
    )


class S3Server:
    """The ``s3_server`` fixture: one versitygw process.

    Attributes: ``endpoint_url``, ``access_key``, ``secret_key``, ``region``, ``data_dir``,
    ``uses_xattrs``, ``ready_seconds``; ``client()``, ``new_bucket(hint)``, ``logs_tail(n)``.
    """

    def __init__(self, workdir: Path, host: str = "127.0.0.1") -> None:
        self.workdir = Path(workdir)
        #: The address it listens on: loopback, or the local cluster's gateway for pods.
        self.host = host
        self.data_dir = self.workdir / "data"
        self.sidecar_dir = self.workdir / "meta"
        self.access_key = "stepflow-test"
        self.secret_key = secrets.token_hex(20)
        self.region = REGION
        self.endpoint_url = ""
        self.process: ServerProcess | None = None
        self.ready_seconds: float | None = None
        self.uses_xattrs = True
        self._bin = bin_path("versitygw")

    def start(self, timeout: float = 20.0, attempts: int = 3) -> S3Server:
        t0 = time.monotonic()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.uses_xattrs = user_xattrs_supported(self.data_dir)
        backend = ["posix"]
        if not self.uses_xattrs:
            self.sidecar_dir.mkdir(parents=True, exist_ok=True)
            backend += ["--sidecar", str(self.sidecar_dir)]
        backend.append(str(self.data_dir))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("VGW_", "ROOT_"))}
        # credentials by environment, so they stay out of the logged command line
        env.update(ROOT_ACCESS_KEY_ID=self.access_key, ROOT_SECRET_ACCESS_KEY=self.secret_key)
        self.process, port = start_http_server(
            "versitygw", lambda port: [self._bin, "--region", self.region, "--port", f"{self.host}:{port}",
                                       "--health", "/health", "--quiet", *backend],
            self.workdir / "logs" / "versitygw.log", host=self.host, health_path="/health", env=env,
            timeout=timeout, attempts=attempts)
        self.endpoint_url = f"http://{self.host}:{port}"
        self.ready_seconds = time.monotonic() - t0
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    def client(self):  # noqa: ANN201 - botocore S3 client
        return boto3_client(self.endpoint_url, self.access_key, self.secret_key, self.region)

    def env(self) -> dict[str, str]:
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_ENDPOINT_URL_S3": self.endpoint_url,
            "STEPFLOW_S3_ENDPOINT_URL": self.endpoint_url,
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def new_bucket(self, hint: str = "t") -> S3Bucket:
        base = re.sub(r"[^a-z0-9-]+", "-", hint.lower()).strip("-")[:40].strip("-") or "t"
        name = f"{base}-{secrets.token_hex(4)}"
        if not name[0].isalnum():
            name = "t" + name
        self.client().create_bucket(Bucket=name)
        return S3Bucket(self, name)

    def delete_bucket(self, name: str) -> None:
        c = self.client()
        for page in c.get_paginator("list_multipart_uploads").paginate(Bucket=name):
            for up in page.get("Uploads", []):
                c.abort_multipart_upload(Bucket=name, Key=up["Key"], UploadId=up["UploadId"])
        for page in c.get_paginator("list_objects_v2").paginate(Bucket=name):
            keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if keys:
                c.delete_objects(Bucket=name, Delete={"Objects": keys, "Quiet": True})
        c.delete_bucket(Bucket=name)

    def logs_tail(self, n: int = 40) -> str:
        if self.process is None:
            return ""
        return f"--- versitygw ({self.process.log_path}) ---\n{self.process.tail(n)}"

    @property
    def processes(self) -> list[ServerProcess]:
        return [self.process] if self.process is not None else []


class S3Bucket:
    """The ``s3`` fixture: a fresh bucket on the session's server.

    ``endpoint_url``, ``access_key``, ``secret_key``, ``region``, ``bucket``, ``root_uri``
    (``s3://<bucket>/stepflow``), ``client()`` (boto3), ``env()`` (variables for a child
    process or monkeypatch), ``server`` (the S3Server).
    """

    def __init__(self, server: S3Server, bucket: str) -> None:
        self.server = server
        self.bucket = bucket
        self.endpoint_url = server.endpoint_url
        self.access_key = server.access_key
        self.secret_key = server.secret_key
        self.region = server.region
        self.root_uri = f"s3://{bucket}/stepflow"

    def client(self) -> Any:
        return self.server.client()

    def env(self) -> dict[str, str]:
        return self.server.env()

    def __repr__(self) -> str:
        return f"<S3Bucket {self.bucket} at {self.endpoint_url}>"
