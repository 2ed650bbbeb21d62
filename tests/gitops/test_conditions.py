"""kstatus condition helpers, and that kubectl wait reads what they write."""

from __future__ import annotations

import json
import re
import secrets

import pytest

from stepflow.gitops import conditions as c

T0, T1, T2 = "2025-01-01T00:00:00Z", "2025-01-01T00:01:00Z", "2025-01-01T00:02:00Z"


def _types(conds):
    return {x["type"]: x["status"] for x in conds}


def test_transition_time_moves_only_when_status_flips():
    conds = c.set_condition([], "Ready", "False", reason="BuildFailed", message="a",
                            observed_generation=1, timestamp=T0)
    conds = c.set_condition(conds, "Ready", "False", reason="SyntaxError", message="b",
                            observed_generation=2, timestamp=T1)
    ready = c.get_condition(conds, "Ready")
    assert ready == {"type": "Ready", "status": "False", "reason": "SyntaxError", "message": "b",
                     "lastTransitionTime": T0, "observedGeneration": 2}
    conds = c.set_condition(conds, "Ready", "True", reason="Succeeded", message="ok",
                            observed_generation=2, timestamp=T2)
    assert c.get_condition(conds, "Ready")["lastTransitionTime"] == T2


def test_negative_polarity_conditions_exist_only_while_true():
    conds = c.set_condition([], "Stalled", "True", reason="InvalidModulePath", message="x",
                            observed_generation=1)
    assert c.is_true(conds, "Stalled")
    conds = c.set_condition(conds, "Stalled", "False", reason="Fixed", message="",
                            observed_generation=1)
    assert c.get_condition(conds, "Stalled") is None


def test_lifecycle_reconciling_failed_stalled_ready():
    conds = c.mark_reconciling(None, observed_generation=1, message="fetching", timestamp=T0)
    assert _types(conds) == {"Ready": "Unknown", "Reconciling": "True"}

    conds = c.mark_failed(conds, observed_generation=1, reason="GitOperationFailed",
                          message="unreachable", timestamp=T1)
    assert _types(conds) == {"Ready": "False", "Reconciling": "True"}
    assert c.get_condition(conds, "Reconciling")["reason"] == c.PROGRESSING_WITH_RETRY

    # A retry keeps the failure visible until it ends.
    conds = c.mark_reconciling(conds, observed_generation=1, message="retrying", timestamp=T2)
    assert c.get_condition(conds, "Ready")["reason"] == "GitOperationFailed"

    conds = c.mark_stalled(conds, observed_generation=2, reason="InvalidModulePath",
                           message="spec.module leaves the repository", timestamp=T2)
    assert _types(conds) == {"Ready": "False", "Stalled": "True"}
    assert c.get_condition(conds, "Ready")["lastTransitionTime"] == T1

    conds = c.mark_ready(conds, observed_generation=3, message="published", timestamp=T2)
    assert _types(conds) == {"Ready": "True"}
    assert [x["type"] for x in conds] == ["Ready"]


def test_ready_comes_first_and_inputs_are_not_mutated():
    original = [{"type": "Custom", "status": "True", "reason": "X", "message": "",
                 "lastTransitionTime": T0}]
    snapshot = json.dumps(original)
    conds = c.mark_reconciling(original, observed_generation=1, message="m")
    assert [x["type"] for x in conds] == ["Ready", "Reconciling", "Custom"]
    assert json.dumps(original) == snapshot


@pytest.mark.parametrize("status, reason", [("true", "X"), ("True", ""), ("True", "1bad")])
def test_invalid_status_or_reason_is_refused(status, reason):
    with pytest.raises(ValueError):
        c.set_condition([], "Ready", status, reason=reason, message="", observed_generation=1)


def test_now_is_rfc3339_utc():
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", c.now())


def test_kubectl_wait_reads_our_ready_condition(kube):
    ns = f"cond-{secrets.token_hex(4)}"
    kube.kubectl("create", "namespace", ns)
    kube.kubectl("-n", ns, "create", "-f", "-", input=json.dumps({
        "apiVersion": "stepflow.dev/v1alpha1", "kind": "Pipeline", "metadata": {"name": "p"},
        "spec": {"source": {"url": "file:///srv/r.git"}, "module": "m.py"}}))

    def patch(conds):
        kube.kubectl("-n", ns, "patch", "pipeline", "p", "--subresource=status", "--type=merge",
                     "-p", json.dumps({"status": {"conditions": conds}}))

    conds = c.mark_failed(None, observed_generation=1, reason="RefNotFound", message="no main")
    patch(conds)
    proc = kube.kubectl("-n", ns, "wait", "--for=condition=Ready", "pipeline/p",
                        "--timeout=1s", check=False)
    assert proc.returncode != 0
    patch(c.mark_ready(conds, observed_generation=1, message="published"))
    kube.kubectl("-n", ns, "wait", "--for=condition=Ready", "pipeline/p", "--timeout=10s")
    got = json.loads(kube.kubectl("-n", ns, "get", "pipeline", "p", "-o", "json").stdout)
    assert [x["type"] for x in got["status"]["conditions"]] == ["Ready"]
