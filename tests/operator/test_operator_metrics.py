"""``/metrics`` of a real operator process, scraped while Pipelines reconcile and execute."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client import REGISTRY
from tests.operator.world import World, conditions, pipeline_manifest, scrape, scrape_until, value
from tests.testenv import free_port
from tests.testenv.samples import BAD_MODULES, TWO_STEPS

import stepflow_operator.metrics  # noqa: F401 - registers the series


def test_series_follow_reconciles_publishes_and_executions(world: World, git_remote):
    port = free_port()
    git_remote.commit({"pipelines/flow.py": TWO_STEPS.format(factor=1, name="flow"), "README.md": "v1\n"}, "v1")
    world.apply(pipeline_manifest("flow", git_remote.url))
    world.operator(STEPFLOW_METRICS_ADDRESS=f"127.0.0.1:{port}", STEPFLOW_RECEIVER_ADDRESS="off")

    world.wait_ready("flow")
    execution = world.wait(lambda: world.items("pipelineexecutions"), 60, "a PipelineExecution")[0]
    world.wait_execution(execution["metadata"]["name"])
    first = scrape_until(world, port, lambda s: value(s, "stepflow_executions_finished_total", phase="Succeeded") > 0,
                         "the finished execution counted")
    ready = world.condition("flow")
    assert conditions(first, world.namespace, "flow") >= {("Ready", "True", ready["reason"])}
    assert value(first, "stepflow_reconcile_duration_seconds_count", result="ready") >= 1
    for stage in ("resolve", "fetch", "build", "publish"):
        assert value(first, "stepflow_reconcile_stage_duration_seconds_count", stage=stage, result="ok") >= 1, stage
    assert value(first, "stepflow_published_objects_total") > 0
    assert value(first, "stepflow_published_bytes_total") > 0
    assert value(first, "stepflow_builds_in_flight") == 0
    assert value(first, "stepflow_step_duration_seconds_count", backend="local", outcome="Succeeded") == 2
    assert value(first, "stepflow_executions") == 0  # none driven any more
    assert value(first, "process_resident_memory_bytes") > 0  # the default collectors are there

    # A commit that changes no step: built again, nothing uploaded, every byte skipped.
    second = git_remote.commit({"README.md": "v2\n"}, "docs only")
    world.wait_ready("flow", summary__revision=second[:7])
    after = scrape_until(world, port, lambda s: value(s, "stepflow_publish_skipped_bytes_total") > 0,
                         "skipped bytes counted")
    assert value(after, "stepflow_published_bytes_total") == value(first, "stepflow_published_bytes_total")
    assert value(after, "stepflow_reconcile_stage_duration_seconds_count", stage="build", result="ok") > value(
        first, "stepflow_reconcile_stage_duration_seconds_count", stage="build", result="ok")

    # A broken commit: the gauge turns to Ready=False with the build's reason; the old series goes.
    source, reason = BAD_MODULES["syntax"]
    git_remote.commit({"pipelines/flow.py": source}, "broken")
    world.wait_ready("flow", value="False")
    broken = scrape_until(world, port, lambda s: ("Ready", "False", reason) in conditions(s, world.namespace, "flow"),
                          "the Ready=False series")
    assert not any(t == "Ready" and st == "True" for t, st, _ in conditions(broken, world.namespace, "flow"))
    assert value(broken, "stepflow_reconcile_stage_duration_seconds_count", stage="build", result="failed") >= 1

    # A deleted Pipeline leaves no series behind.
    world.kubectl("delete", "pipeline", "flow")
    world.wait(lambda: not conditions(scrape(port), world.namespace, "flow"), 30, "the Pipeline's series gone")


def test_the_grafana_dashboard_queries_only_series_the_operator_exports():
    exported = {s.name for family in REGISTRY.collect() for s in family.samples} | {
        f.name + suffix for f in REGISTRY.collect() for suffix in ("", "_total", "_bucket", "_count", "_sum")}
    dashboard = Path(__file__).resolve().parents[2] / "docs" / "grafana" / "stepflow-operator.json"
    queries = [t["expr"] for p in json.loads(dashboard.read_text())["panels"] for t in p["targets"]]
    used = {m for q in queries for m in re.findall(r"\b(stepflow_[a-z_]+|process_[a-z_]+)\b", q)}
    assert used and used <= exported, sorted(used - exported)
