"""Single PUTs to S3 without botocore's per-request overhead: signed by hand, sent on urllib3.

Publishing a 1,000-step pipeline is ~4,000 small PUTs, and botocore spends about a
millisecond of CPU on each (parameter validation, serialisation, event hooks, retry
handlers), under the GIL. This transport takes the URL, signing region and credentials once
from the boto3 client (:func:`find_put_target`, so addressing and endpoint resolution are
boto3's), signs each request with botocore's own SigV4 signer and sends it on the
connection's shared urllib3 pool (:func:`put`), retrying what S3 says to retry. What it
does not reproduce (no SigV4, a proxy, a region redirect) it leaves to boto3: the store
falls back for those.
"""

from __future__ import annotations

import html
import random
import re
import secrets
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

import urllib3
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest, AWSResponse
from botocore.credentials import Credentials

from stepflow.storage.s3_clients import Connection

# Backoff between attempts: full jitter, uniform in [0, min(cap, base * 2**n)).
_BACKOFF_BASE = 0.1
_BACKOFF_CAP = 5.0

_ERROR_FIELD = re.compile(rb"<(Code|Message)>([^<]*)</(?:Code|Message)>")
_RETRY_CODES = frozenset({"SlowDown", "RequestTimeout", "InternalError", "ServiceUnavailable",
                          "Throttling", "ThrottlingException", "RequestLimitExceeded"})
# Answers that mean "this bucket lives in another region": boto3 follows those.
_REDIRECT_CODES = frozenset({"PermanentRedirect", "TemporaryRedirect", "AuthorizationHeaderMalformed",
                             "IllegalLocationConstraintException"})
_SIGV4_SCOPE = re.compile(
    r"^AWS4-HMAC-SHA256 Credential=[^/]+/\d{8}/(?P<region>[^/]+)/(?P<service>[^/]+)/aws4_request,"
)


@dataclass(frozen=True)
class PutTarget:
    """Where and how a bare PUT of a bucket's objects goes, as boto3 resolved it."""

    url_prefix: str  # scheme://host[/bucket]/ : a quoted key is appended
    region: str  # the SigV4 signing region and service, from boto3's own signature
    service: str
    credentials: Credentials = field(repr=False)
    connection: Connection = field(repr=False)


@dataclass(frozen=True)
class PutAnswer:
    """How the last attempt of a PUT ended: an answer (``status``) or none (``error``)."""

    status: int | None
    etag: str | None = None
    code: str = ""  # S3's error code and message, from the XML body
    message: str = ""
    error: urllib3.exceptions.HTTPError | None = None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def redirected(self) -> bool:
        """The bucket lives elsewhere: boto3 finds its region and retries there."""
        return self.code in _REDIRECT_CODES or (self.status is not None and 300 <= self.status < 400)

    @property
    def retryable(self) -> bool:
        return self.status is None or self.status >= 500 or self.status == 429 \
            or self.code in _RETRY_CODES


def find_put_target(connection: Connection, bucket: str) -> PutTarget | None:
    """Where boto3 would send a PutObject to ``bucket``, and how it would sign it.

    Learnt by letting the client prepare a PutObject and intercepting it before it is sent,
    so the endpoint, addressing style and signing region are whatever boto3 resolves
    (nothing goes on the wire). ``None`` when its signature is not SigV4 or a proxy is in
    the way: then the caller uses boto3 for everything. Raises boto3's errors.
    """
    client = connection.client
    marker = f"stepflow-put-many-{secrets.token_hex(8)}"
    prepared: list[Any] = []

    def intercept(request: Any, **_: Any) -> AWSResponse | None:
        if urlsplit(request.url).path.endswith(marker):
            prepared.append(request)
            return AWSResponse(request.url, 200, {}, _NoBody())
        return None

    events = client.meta.events
    events.register_first("before-send.s3.PutObject", intercept)
    try:
        client.put_object(Bucket=bucket, Key=marker, Body=b"")
    finally:
        events.unregister("before-send.s3.PutObject", intercept)
    url = prepared[0].url
    authorization = prepared[0].headers.get("Authorization") or ""
    if isinstance(authorization, bytes):
        authorization = authorization.decode()
    scope = _SIGV4_SCOPE.match(authorization)
    credentials = connection.credentials
    if credentials is None or scope is None or not url.endswith(marker) or _proxied(url):
        return None
    return PutTarget(url_prefix=url[: -len(marker)], region=scope["region"],
                     service=scope["service"], credentials=credentials, connection=connection)


def put(target: PutTarget, key: str, data: bytes, sha256: str) -> PutAnswer:
    """PUT ``data`` at ``key`` (the full object key) with its SHA-256 as metadata.

    Up to the connection's ``limits.attempts`` tries with jittered backoff while the answer is retryable (no answer,
    5xx, 429, S3's throttling codes); a redirect or any other refusal ends it at once.
    """
    url = target.url_prefix + quote(key, safe="/~")  # quoted as boto3 does
    pool = target.connection.http()
    answer = PutAnswer(status=None)
    for attempt in range(target.connection.limits.attempts):
        if attempt:
            _backoff(attempt - 1)
        request = AWSRequest(method="PUT", url=url, data=data, headers={"x-amz-meta-sha256": sha256})
        request.context["sha256"] = sha256
        _SignWithKnownDigest(target.credentials.get_frozen_credentials(), target.service,
                             target.region).add_auth(request)
        try:
            response = pool.urlopen("PUT", url, body=data, headers=dict(request.headers.items()),
                                    redirect=False)
        except urllib3.exceptions.HTTPError as exc:
            answer = PutAnswer(status=None, error=exc)
            continue
        if 200 <= response.status < 300:
            etag = response.headers.get("ETag")
            return PutAnswer(response.status, etag=etag.strip('"') if etag else None)
        code, message = _error_fields(response.data)
        answer = PutAnswer(response.status, code=code, message=message)
        if answer.redirected or not answer.retryable:
            break
    return answer


class _SignWithKnownDigest(S3SigV4Auth):
    """botocore's S3 SigV4 signer, fed the body's SHA-256 that the caller computed anyway.

    The signed payload hash costs nothing extra then, and unlike UNSIGNED-PAYLOAD it is
    allowed over plain http too and makes the server verify the body.
    """

    def payload(self, request: AWSRequest) -> str:
        return request.context["sha256"]


class _NoBody:
    """The raw body of the response that stands in for a request never sent."""

    def stream(self) -> Iterator[bytes]:
        return iter(())


def _error_fields(body: bytes) -> tuple[str, str]:
    """``(Code, Message)`` of an S3 XML error body; empty strings when it has none."""
    fields = {name.decode(): html.unescape(value.decode("utf-8", "replace"))
              for name, value in _ERROR_FIELD.findall(body)}
    return fields.get("Code", ""), fields.get("Message", "")


def _backoff(attempt: int) -> None:
    time.sleep(random.uniform(0, min(_BACKOFF_CAP, _BACKOFF_BASE * 2 ** attempt)))


def _proxied(url: str) -> bool:
    """Whether the environment routes ``url`` through a proxy (boto3 honours it; we do not)."""
    parts = urlsplit(url)
    return bool(urllib.request.getproxies().get(parts.scheme)) and not urllib.request.proxy_bypass(parts.netloc)
