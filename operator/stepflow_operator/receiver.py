"""The push webhook receiver: ``Receiver`` resources and the HTTP server that serves them.

Each ``Receiver`` gets a daemon (:func:`run`) that reads the token from its Secret, derives
the unguessable path from it (as Flux does) and registers the path here; the server, on its
own port, answers ``POST <path>``:

======================================= ======================= ===========
request                                 answer                  result label
======================================= ======================= ===========
path of no Receiver, or not POST        404 / 405               not_found, method_not_allowed
more than ``burst`` at once per Receiver 429 (Retry-After)      rate_limited
body over ``MAX_BODY_BYTES``            413                     too_large
no signature / token                    401                     unsigned
wrong signature / token                 403                     bad_signature
authentic, not JSON                     400                     bad_payload
ping                                    200                     ping
push                                    202, reconciles         accepted
any other event                         202                     ignored
======================================= ======================= ===========

A push sets ``stepflow.dev/reconcile-requested-at`` on every Pipeline of the Receiver's
namespace whose source it moved: the Pipeline's daemon wakes on that watch event, as for
``kubectl annotate``. Nothing of a request's body, of the token or of the path is logged.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import kopf
from aiohttp import web

from stepflow.errors import StepflowError
from stepflow.gitops import conditions as cond
from stepflow.gitops import push_events, reasons
from stepflow.gitops.source import Ref
from stepflow_operator import metrics
from stepflow_operator.kube import Kube
from stepflow_operator.patches import merge_patch
from stepflow_operator.settings import PIPELINES, RECEIVERS, RECONCILE_ANNOTATION

#: Push payloads are a few kB (GitHub caps any payload at 25 MB); 1 MiB is generous.
MAX_BODY_BYTES = 1 << 20
#: Per Receiver: a burst of this many requests, refilled at ``RATE`` per second.
BURST = 20
RATE = 5.0
#: How often a Receiver's Secret is read again (a rotated token moves the path).
REFRESH_SECONDS = 30.0

log = logging.getLogger(__name__)


class TokenBucket:
    """``burst`` requests at once, then ``rate`` per second."""

    def __init__(self, rate: float = RATE, burst: int = BURST) -> None:
        self.rate, self.burst = rate, burst
        self._tokens = float(burst)
        self._at = time.monotonic()
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            now = time.monotonic()
            self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
            self._at = now
            if self._tokens < 1:
                return False
            self._tokens -= 1
            return True


@dataclass
class Endpoint:
    """One registered Receiver. ``token`` never leaves this object."""

    namespace: str
    name: str
    provider: push_events.Provider
    token: bytes = field(repr=False)
    bucket: TokenBucket = field(default_factory=TokenBucket)

    @property
    def label(self) -> str:
        return f"{self.namespace}/{self.name}"


class Registry:
    """Webhook paths of the Receivers this operator serves."""

    def __init__(self) -> None:
        self._by_path: dict[str, Endpoint] = {}
        self._paths: dict[tuple[str, str], str] = {}

    def register(self, path: str, endpoint: Endpoint) -> None:
        key = (endpoint.namespace, endpoint.name)
        old = self._paths.get(key)
        if old == path and self._by_path[old].provider == endpoint.provider:
            return  # the same path means the same token: keep the bucket
        self.drop(*key)
        self._by_path[path] = endpoint
        self._paths[key] = path

    def drop(self, namespace: str, name: str) -> None:
        path = self._paths.pop((namespace, name), None)
        if path is not None:
            self._by_path.pop(path, None)

    def find(self, path: str) -> Endpoint | None:
        return self._by_path.get(path)


# -- the Receiver resource -----------------------------------------------------------------

async def run(kube: Kube, registry: Registry, body: kopf.Body, memo: kopf.Memo, stopped: kopf.DaemonStopped,
              logger: kopf.Logger) -> None:
    """The daemon of one Receiver: register its path, keep it current, drop it at the end."""
    meta = body["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    wake = _wake(memo)
    memo["generation"] = meta.get("generation")
    status: dict[str, Any] = dict(body.get("status") or {})
    try:
        while not stopped:
            wake.clear()
            status = await _refresh(kube, registry, body, status, logger)
            waiters = [asyncio.ensure_future(wake.wait()), asyncio.ensure_future(stopped.wait())]
            await asyncio.wait(waiters, timeout=REFRESH_SECONDS, return_when=asyncio.FIRST_COMPLETED)
            for waiter in waiters:
                waiter.cancel()
    finally:
        registry.drop(namespace, name)


def notice(body: Mapping[str, Any], memo: kopf.Memo) -> None:
    """A watch event: wake the daemon when the spec changed."""
    generation = (body.get("metadata") or {}).get("generation")
    if memo.get("generation") != generation:
        memo["generation"] = generation
        _wake(memo).set()


def _wake(memo: kopf.Memo) -> asyncio.Event:
    if "wake" not in memo:
        memo["wake"] = asyncio.Event()
    return memo["wake"]


async def _refresh(kube: Kube, registry: Registry, body: kopf.Body, status: dict[str, Any],
                   logger: kopf.Logger) -> dict[str, Any]:
    meta, spec = body["metadata"], body.get("spec") or {}
    namespace, name, generation = meta["namespace"], meta["name"], meta.get("generation")
    # The watch's copy of the spec is current: kopf hands the daemon the live body.
    provider, secret = spec.get("type"), (spec.get("secretRef") or {}).get("name", "")
    new = dict(status)
    try:
        token = await _token(kube, namespace, secret)
        if provider not in push_events.PROVIDERS:
            raise StepflowError(f"spec.type {provider!r} is not one of {', '.join(push_events.PROVIDERS)}",
                                reason="InvalidSpec")
    except StepflowError as exc:
        registry.drop(namespace, name)
        new.pop("webhookPath", None)
        new["conditions"] = cond.mark_failed(status.get("conditions"), observed_generation=generation,
                                             reason=exc.reason, message=str(exc))
    else:
        path = push_events.webhook_path(token.decode("utf-8", "replace"), name, namespace)
        registry.register(path, Endpoint(namespace, name, provider, token))
        new["webhookPath"] = path
        new["conditions"] = cond.mark_ready(status.get("conditions"), observed_generation=generation,
                                            message=f"receiving {provider} webhooks at status.webhookPath")
    new["observedGeneration"] = generation
    patch = merge_patch(status, new)
    if patch:
        stored = await kube.patch_status(RECEIVERS, namespace, name, patch)
        if stored is not None:
            ready = cond.get_condition(new["conditions"], "Ready") or {}
            logger.info("Receiver %s/%s: Ready=%s (%s)", namespace, name, ready.get("status"), ready.get("reason"))
            return dict(stored.get("status") or new)
    return new


async def _token(kube: Kube, namespace: str, secret: str) -> bytes:
    data = await kube.secret_data(namespace, secret) if secret else None
    if data is None:
        raise StepflowError(
            f"spec.secretRef names the Secret {secret!r}, which does not exist in namespace {namespace!r}; create "
            f"it: kubectl -n {namespace} create secret generic {secret or 'webhook-token'} "
            "--from-literal=token=$(head -c 24 /dev/urandom | base64)", reason=reasons.SECRET_NOT_FOUND)
    try:
        token = base64.b64decode(data.get("token") or "", validate=True)
    except binascii.Error:
        token = b""
    if not token.strip():
        raise StepflowError(f"the Secret {secret!r} has no non-empty key 'token'; add one (the webhook secret "
                            "you give the git host)", reason=reasons.INVALID_SECRET)
    return token.strip()


# -- the HTTP server -----------------------------------------------------------------------

class Server:
    """``aiohttp`` on the operator's event loop, on its own port."""

    def __init__(self, kube: Kube, registry: Registry) -> None:
        self.kube, self.registry = kube, registry
        self.app = web.Application(client_max_size=MAX_BODY_BYTES)
        self.app.router.add_route("*", "/{tail:.*}", self.handle)
        self._runner: web.AppRunner | None = None

    async def start(self, address: str) -> None:
        host, _, port = address.rpartition(":")
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, host, int(port)).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def handle(self, request: web.Request) -> web.Response:
        endpoint = self.registry.find(request.path)
        if endpoint is None:
            return _answer("", "not_found", 404, "no receiver at this path")
        if request.method != "POST":
            return _answer(endpoint.label, "method_not_allowed", 405, "POST only")
        if not endpoint.bucket.take():
            response = _answer(endpoint.label, "rate_limited", 429, "too many requests")
            response.headers["Retry-After"] = str(max(1, round(1 / endpoint.bucket.rate)))
            return response
        if (request.content_length or 0) > MAX_BODY_BYTES:
            return _answer(endpoint.label, "too_large", 413, f"the body is over {MAX_BODY_BYTES} bytes")
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return _answer(endpoint.label, "too_large", 413, f"the body is over {MAX_BODY_BYTES} bytes")
        try:
            push_events.verify(endpoint.provider, endpoint.token, request.headers, raw)
            event = push_events.parse(endpoint.provider, request.headers, raw)
        except push_events.Unsigned:
            return _answer(endpoint.label, "unsigned", 401, "no signature")
        except push_events.BadSignature:
            return _answer(endpoint.label, "bad_signature", 403, "the signature does not match")
        except push_events.BadPayload as exc:
            return _answer(endpoint.label, "bad_payload", 400, str(exc))
        if isinstance(event, push_events.Ping):
            return _answer(endpoint.label, "ping", 200, "pong")
        if isinstance(event, push_events.Ignored):
            return _answer(endpoint.label, "ignored", 202, "event ignored")
        count = await self._reconcile(endpoint, event)
        return _answer(endpoint.label, "accepted", 202, f"{count} pipeline(s) reconciling")

    async def _reconcile(self, endpoint: Endpoint, push: push_events.Push) -> int:
        """Ask every Pipeline of the namespace that ``push`` moved to reconcile now."""
        stamp = datetime.now(UTC).isoformat()  # unique per push: each one is a new request
        count = 0
        for pipeline in await self.kube.list_objects(PIPELINES, endpoint.namespace):
            source = (pipeline.get("spec") or {}).get("source") or {}
            try:
                remote_ref = Ref.from_spec(source.get("ref")).remote_ref()
            except StepflowError:
                continue  # the Pipeline reports its own invalid ref
            if push_events.moves(push, str(source.get("url") or ""), remote_ref):
                name = pipeline["metadata"]["name"]
                if await self.kube.annotate(PIPELINES, endpoint.namespace, name, {RECONCILE_ANNOTATION: stamp}):
                    count += 1
        log.info("Receiver %s: push reconciles %d Pipeline(s)", endpoint.label, count)
        return count


def _answer(receiver: str, result: str, status: int, text: str) -> web.Response:
    metrics.webhook_request(receiver, result)
    return web.json_response({"status": status, "message": text}, status=status)
