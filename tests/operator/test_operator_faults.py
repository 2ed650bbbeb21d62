"""Issue 15 against the real operator process, API server, S3 server and git server: a
publish that fails until the bucket exists, a store that freezes, two Pipelines claiming one
pipeline name. Recovery times are printed (``-s`` shows them); they are measured, not asserted
(speed goals live in bench/)."""

from __future__ import annotations

import secrets
import time

from tests.operator.world import World, pipeline_manifest
from tests.testenv.samples import TWO_STEPS

from stepflow import layout
from stepflow.backends.local import LocalBackend
from stepflow.storage import open_store


def _condition(world: World, name: str, type_: str) -> dict:
    status = world.get("pipeline", name).get("status") or {}
    return next((c for c in status.get("conditions") or () if c["type"] == type_), {})


def test_a_publish_into_a_missing_bucket_recovers_once_it_exists_without_rebuilding(world, git_remote, s3):
    git_remote.commit({"pipelines/flow.py": TWO_STEPS.format(factor=1, name="flow")}, "v1")
    bucket = f"later-{secrets.token_hex(4)}"
    world.apply(pipeline_manifest("late", git_remote.url, s3RootUri=f"s3://{bucket}/stepflow",
                                  source={"interval": "1m"}))
    world.operator()
    failed = world.wait_ready("late", "False", timeout=60)
    ready = next(c for c in failed["status"]["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "BucketNotFound", ready
    built = failed["status"]["lastBuild"]
    # a few retries with a growing backoff (1, 2, 4 s ...), all from the kept build
    world.wait(lambda: _retries(world) >= 3, 60, "three failed publishes")
    s3.server.client().create_bucket(Bucket=bucket)
    created = time.monotonic()
    try:
        pipeline = world.wait_ready("late", timeout=60)
        recovery = time.monotonic() - created
        print(f"\nbucket created -> Ready: {recovery:.1f} s")
        assert pipeline["status"]["lastBuild"] == built, "the publish was retried without building again"
        assert pipeline["status"]["definition"]["uploadedFiles"] > 0
        execution = world.wait(lambda: world.items("pipelineexecutions"), 30, "a PipelineExecution")[0]
        world.wait_execution(execution["metadata"]["name"])
    finally:
        world.kubectl("delete", "pipeline", "late", "--wait=true", "--timeout=60s", check=False)
        s3.server.delete_bucket(bucket)


def _retries(world: World) -> int:
    """Failed publishes so far: the operator's Warning events for the Pipeline, counted."""
    return sum(e.get("count") or 1 for e in world.events("late") if e["reason"] == "BucketNotFound")


def test_a_frozen_store_shows_reconciling_then_store_timeout_then_ready_after_it_thaws(world, git_remote, s3):
    first = git_remote.commit({"pipelines/flow.py": TWO_STEPS.format(factor=1, name="flow")}, "v1")
    world.apply(pipeline_manifest("frozen", git_remote.url))
    world.operator(STEPFLOW_S3_TIMEOUT="1", STEPFLOW_S3_ATTEMPTS="2")
    world.wait_ready("frozen", summary__revision=first[:7])
    execution = world.wait(lambda: world.items("pipelineexecutions"), 30, "the first execution")[0]
    world.wait_execution(execution["metadata"]["name"])

    with s3.server.process.frozen():
        second = git_remote.commit({"pipelines/flow.py": TWO_STEPS.format(factor=2, name="flow")}, "v2")
        reconciling = world.wait(
            lambda: (c := _condition(world, "frozen", "Reconciling")).get("reason") == "Progressing" and c, 30,
            "Reconciling=True/Progressing while the store hangs")
        assert reconciling["status"] == "True" and second[:7] in reconciling["message"], reconciling
        assert _condition(world, "frozen", "Ready")["status"] != "True", "not the old Ready=True"
        timed_out = world.wait(lambda: (c := _condition(world, "frozen", "Ready")).get("reason") == "StoreTimeout"
                               and c, 30, "Ready=False/StoreTimeout after the deadline")
        assert s3.endpoint_url in timed_out["message"] and "at most 1 s" in timed_out["message"], timed_out
        assert _condition(world, "frozen", "Reconciling")["status"] == "True"
    thawed = time.monotonic()
    pipeline = world.wait_ready("frozen", summary__revision=second[:7], timeout=60)
    print(f"\nS3 thawed -> Ready: {time.monotonic() - thawed:.1f} s")
    assert pipeline["status"]["definition"]["revision"].endswith(second)
    assert not _condition(world, "frozen", "Reconciling"), "Reconciling is removed when the work is done"


def test_two_pipelines_of_one_module_in_one_store_each_run_their_own_code(world, git_remote, s3, monkeypatch):
    """prod on main, staging on dev, the same module (pipeline ``flow``) and the same store:
    each publishes under its own resource's folder, and each execution runs its own code and
    returns its own result (staging used to report its digest and run prod's code)."""
    git_remote.commit({"pipelines/flow.py": TWO_STEPS.format(factor=1, name="flow")}, "prod")
    git_remote.commit({"pipelines/flow.py": TWO_STEPS.format(factor=2, name="flow")}, "staging", branch="dev")
    world.apply(pipeline_manifest("prod", git_remote.url))
    world.apply(pipeline_manifest("staging", git_remote.url, source={"ref": {"branch": "dev"}}))
    world.operator()
    for key, value in s3.env().items():
        monkeypatch.setenv(key, value)
    results = {}
    for name in ("prod", "staging"):
        pipeline = world.wait_ready(name)
        definition = pipeline["status"]["definition"]
        assert definition["pipelineName"] == "flow"
        assert definition["uri"].startswith(f"{s3.root_uri}/{world.namespace}/{name}/flow/"), definition["uri"]
        runs = world.wait(lambda name=name: [e for e in world.items("pipelineexecutions")
                                             if e["spec"]["pipelineRef"]["name"] == name], 30, f"{name}'s execution")
        done = world.wait_execution(runs[0]["metadata"]["name"])
        assert done["status"]["definitionDigest"] == definition["digest"]
        store = open_store(f"{s3.root_uri}/{layout.resource_prefix(world.namespace, name)}")
        results[name] = LocalBackend(store).result("flow", runs[0]["metadata"]["name"], "total")
    assert results == {"prod": 10, "staging": 20}, "each ran its own code"
