"""The operator's pure parts: status merge patches, the latest-execution claim, the CLI."""

from __future__ import annotations

import kopf
import pytest

from stepflow.gitops.execution_status import duration_text
from stepflow_operator.__main__ import kopf_arguments, parse
from stepflow_operator.context import Runs
from stepflow_operator.patches import merge_patch
from stepflow_operator.settings import configure_kopf


def test_merge_patch_touches_only_what_changed_and_deletes_what_went():
    old = {"conditions": [{"type": "Ready", "status": "False"}], "summary": {"revision": "abc", "steps": "1/2"},
           "lastBuild": {"reason": "SyntaxError", "line": 3}, "nextScheduleTime": "t"}
    new = {"conditions": [{"type": "Ready", "status": "True"}], "summary": {"revision": "def", "steps": "1/2"},
           "lastBuild": {"reason": None, "line": None}}
    assert merge_patch(old, new) == {
        "conditions": [{"type": "Ready", "status": "True"}], "summary": {"revision": "def"},
        "lastBuild": {"reason": None, "line": None}, "nextScheduleTime": None}
    assert merge_patch(new, new) == {}
    assert merge_patch({}, {"definition": {"digest": "d", "uri": None}}) == {"definition": {"digest": "d"}}


def test_a_resumed_old_execution_does_not_take_the_summary_from_a_newer_one():
    runs = Runs()
    recorded = ("2025-01-02T00:00:00Z", "newer")
    assert not runs.claim_latest("ns", "p", "older", "2025-01-01T00:00:00Z", recorded)
    assert runs.claim_latest("ns", "p", "newest", "2025-01-03T00:00:00Z", recorded)
    assert runs.is_latest("ns", "p", "newest") and not runs.is_latest("ns", "p", "newer")
    assert runs.claim_latest("ns", "p", "newest", "2025-01-03T00:00:00Z", None)


@pytest.mark.parametrize("argv, env, expected", [
    ([], {}, ["--all-namespaces"]),
    (["-n", "a", "-n", "b"], {}, ["--namespace=a", "--namespace=b"]),
    ([], {"STEPFLOW_WATCH_NAMESPACES": "x, y"}, ["--namespace=x", "--namespace=y"]),
    (["--standalone", "-n", "ml-*"], {}, ["--namespace=ml-*"]),
    (["--leader-elect", "--verbose", "--log-format", "json"], {},
     ["--all-namespaces", "--log-format=json", "--verbose"]),
])
def test_command_line_maps_to_kopf_run(argv, env, expected, monkeypatch):
    monkeypatch.delenv("STEPFLOW_WATCH_NAMESPACES", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    # Always --standalone: with --leader-elect the Lease, not kopf's peering, keeps one active.
    assert kopf_arguments(parse(argv)) == ["run", "--module=stepflow_operator.handlers", "--standalone", *expected]


def test_contradictory_flags_are_refused():
    with pytest.raises(SystemExit):
        parse(["-A", "-n", "x"])
    with pytest.raises(SystemExit):
        parse(["--peering", "x"])  # gone: --leader-elect


@pytest.mark.parametrize("seconds, text", [(8, "8s"), (72, "1m12s"), (120, "2m"), (3720, "1h2m"), (7200, "2h")])
def test_durations_read_like_kubectl_ages(seconds, text):
    assert duration_text(seconds) == text


@pytest.mark.parametrize(("namespaces", "disabled"), [
    (["team-a", "team-b"], True), (["ml-*"], False), (["team-a", "!kube-system"], False), ([], False)])
def test_namespaces_by_name_need_no_namespace_scanning(namespaces, disabled):
    """A namespaced install may not list namespaces: kopf would retry ~55 s at each start."""
    settings = kopf.OperatorSettings()
    configure_kopf(settings, namespaces)
    assert settings.scanning.disabled is disabled
