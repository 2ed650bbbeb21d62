"""Leader election on a real API server's Lease: one holder, takeover after expiry, release."""

from __future__ import annotations

import secrets
import threading

import pytest
from tests.testenv import wait_for

from stepflow_operator.leader import LeaderElector, Timing

FAST = Timing(lease=2.0, renew_deadline=1.5, retry=0.2)


@pytest.fixture
def lease_namespace(kube):
    namespace = f"lease-{secrets.token_hex(4)}"
    kube.kubectl("create", "namespace", namespace)
    yield namespace
    kube.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def _elector(kube, namespace: str, identity: str) -> LeaderElector:
    return LeaderElector(kube.new_api_client(), namespace, "stepflow", identity, FAST)


def test_one_holder_at_a_time_and_a_takeover_only_after_expiry(kube, lease_namespace):
    a, b = _elector(kube, lease_namespace, "a"), _elector(kube, lease_namespace, "b")
    assert a.try_acquire_or_renew()
    assert not b.try_acquire_or_renew()
    assert a.try_acquire_or_renew()  # renewing
    # a stops renewing: b waits for a whole lease without a renewal, then takes over.
    assert not b.try_acquire_or_renew()
    wait_for(b.try_acquire_or_renew, timeout=10, interval=0.1, message="b taking the expired lease")
    assert not a.try_acquire_or_renew()
    lease = kube.kubectl("-n", lease_namespace, "get", "lease", "stepflow", "-o",
                         "jsonpath={.spec.holderIdentity} {.spec.leaseTransitions}").stdout
    assert lease == "b 1"


def test_concurrent_candidates_elect_exactly_one(kube, lease_namespace):
    electors = [_elector(kube, lease_namespace, f"c{i}") for i in range(4)]
    results: list[bool] = [False] * len(electors)
    start = threading.Barrier(len(electors))

    def run(i: int) -> None:
        start.wait()
        results[i] = electors[i].try_acquire_or_renew()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(electors))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert results.count(True) == 1, results


def test_a_released_lease_is_taken_at_once_and_a_lost_one_is_reported(kube, lease_namespace):
    a, b = _elector(kube, lease_namespace, "a"), _elector(kube, lease_namespace, "b")
    assert a.try_acquire_or_renew()
    assert not b.try_acquire_or_renew()
    a.release()
    assert b.try_acquire_or_renew()  # no need to wait for the lease to expire
    lost = threading.Event()
    a.keep(lost.set)  # a believes it leads; renewing finds b holding the Lease
    assert lost.wait(10), "a should notice it lost the Lease"
