"""Leader election on a ``coordination.k8s.io/v1`` Lease: exactly one active replica.

The ecosystem's convention (client-go's ``leaderelection``, as controller-runtime and Flux
use it): a replica becomes the leader by writing its identity into the Lease, keeps it by
renewing it every ``retry`` seconds, and a standby takes the Lease over once it has seen no
renewal for ``lease`` seconds. Expiry is judged on the standby's own monotonic clock from
the moment it observed the record change, never by comparing two machines' clocks. Every
write carries the ``resourceVersion`` read, so two standbys cannot both win.

A leader that cannot renew for ``renew_deadline`` (< ``lease``) exits at once: it must stop
before anyone else may start (a graceful kopf shutdown could outlive the lease). Executions
lose nothing: their state and the running steps live outside the process, and the new
leader resumes them.
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from kubernetes import client
from kubernetes.client.exceptions import ApiException

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Timing:
    """client-go's defaults are 15/10/2 s; takeover after a crash takes about ``lease + retry``."""

    lease: float = 15.0
    renew_deadline: float = 10.0
    retry: float = 2.0

    def __post_init__(self) -> None:
        if not 0 < self.retry < self.renew_deadline < self.lease:
            raise ValueError(f"leader election needs 0 < retry ({self.retry}) < renew deadline "
                             f"({self.renew_deadline}) < lease ({self.lease})")


def _now() -> datetime:
    return datetime.now(UTC)


class LeaderElector:
    """One replica's side of the election for the Lease ``namespace/name``."""

    def __init__(self, api: client.ApiClient, namespace: str, name: str, identity: str,
                 timing: Timing | None = None) -> None:
        self.coordination = client.CoordinationV1Api(api)
        self.namespace, self.name, self.identity = namespace, name, identity
        self.timing = timing or Timing()
        self._observed: tuple[str | None, str | None] | None = None  # (holder, renewTime) last seen
        self._observed_at = 0.0

    def acquire(self, stop: threading.Event | None = None) -> bool:
        """Block until this replica holds the Lease (True), or ``stop`` is set (False)."""
        announced = False
        while not (stop and stop.is_set()):
            if self.try_acquire_or_renew():
                log.info("leader election: %s holds Lease %s/%s", self.identity, self.namespace, self.name)
                return True
            if not announced:
                log.info("leader election: standing by; Lease %s/%s is held by %s", self.namespace, self.name,
                         self._observed[0] if self._observed else "?")
                announced = True
            time.sleep(self.timing.retry)
        return False

    def keep(self, on_lost: Callable[[], None]) -> threading.Thread:
        """Renew every ``retry`` seconds in a daemon thread; ``on_lost()`` when it cannot for
        ``renew_deadline`` seconds or another replica took the Lease."""
        def renew() -> None:
            last = time.monotonic()
            while True:
                time.sleep(self.timing.retry)
                try:
                    ok = self.try_acquire_or_renew()
                except Exception:  # noqa: BLE001 - an API hiccup is retried until the deadline
                    log.warning("leader election: renewing the Lease failed", exc_info=True)
                    ok = False
                if ok:
                    last = time.monotonic()
                elif self._observed and self._observed[0] not in (None, "", self.identity):
                    log.error("leader election: Lease taken by %s", self._observed[0])
                    on_lost()
                    return
                elif time.monotonic() - last > self.timing.renew_deadline:
                    log.error("leader election: could not renew the Lease for %.0fs", self.timing.renew_deadline)
                    on_lost()
                    return
        thread = threading.Thread(target=renew, name="leader-election", daemon=True)
        thread.start()
        return thread

    def release(self) -> None:
        """Give the Lease up on a clean exit, so a standby need not wait for it to expire."""
        try:
            lease = self.coordination.read_namespaced_lease(self.name, self.namespace)
            if lease.spec and lease.spec.holder_identity == self.identity:
                lease.spec.holder_identity = None
                lease.spec.lease_duration_seconds = 1
                self.coordination.replace_namespaced_lease(self.name, self.namespace, lease)
        except ApiException:
            log.warning("leader election: releasing the Lease failed; it expires by itself", exc_info=True)

    def try_acquire_or_renew(self) -> bool:
        """One round: True when this replica holds the Lease afterwards."""
        duration = max(1, round(self.timing.lease))
        try:
            lease = self.coordination.read_namespaced_lease(self.name, self.namespace)
        except ApiException as exc:
            if exc.status != 404:
                raise
            body = client.V1Lease(
                metadata=client.V1ObjectMeta(name=self.name, namespace=self.namespace),
                spec=client.V1LeaseSpec(holder_identity=self.identity, lease_duration_seconds=duration,
                                        acquire_time=_now(), renew_time=_now(), lease_transitions=0))
            try:
                self.coordination.create_namespaced_lease(self.namespace, body)
            except ApiException as exc:
                if exc.status == 409:
                    return False
                raise
            return True

        spec = lease.spec or client.V1LeaseSpec()
        holder = spec.holder_identity or None
        record = (holder, spec.renew_time.isoformat() if spec.renew_time else None)
        if record != self._observed:
            self._observed, self._observed_at = record, time.monotonic()
        held_by_other = holder is not None and holder != self.identity
        observed_duration = float(spec.lease_duration_seconds or duration)
        if held_by_other and time.monotonic() - self._observed_at < observed_duration:
            return False

        now = _now()
        if holder != self.identity:
            spec.acquire_time = now
            spec.lease_transitions = (spec.lease_transitions or 0) + 1
        spec.holder_identity = self.identity
        spec.lease_duration_seconds = duration
        spec.renew_time = now
        lease.spec = spec
        try:  # carries metadata.resourceVersion: a concurrent writer gets 409
            self.coordination.replace_namespaced_lease(self.name, self.namespace, lease)
        except ApiException as exc:
            if exc.status == 409:
                return False
            raise
        self._observed, self._observed_at = (self.identity, now.isoformat()), time.monotonic()
        return True


def default_identity() -> str:
    """``<pod>_<random>_<pid>``: unique per replica and per restart. The pod's name
    (``$HOSTNAME``) and the pid alone are not: a restarted container's process gets the same
    pid in its fresh PID namespace, and would take the Lease of its dead predecessor as its
    own (seen on a real cluster: tini is 1, the operator 7, every time)."""
    return f"{os.environ.get('HOSTNAME') or os.uname().nodename}_{secrets.token_hex(4)}_{os.getpid()}"


def default_namespace() -> str:
    """The pod's namespace (``$POD_NAMESPACE``, else the service account's), else ``default``."""
    if os.environ.get("POD_NAMESPACE"):
        return os.environ["POD_NAMESPACE"]
    try:
        with open("/var/run/secrets/kubernetes.io/serviceaccount/namespace") as f:
            return f.read().strip() or "default"
    except OSError:
        return "default"
