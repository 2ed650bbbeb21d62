"""The reconciler core against real git repositories, the real sandbox and a real store."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from datetime import UTC, datetime, timedelta

from gitops_world import EXAMPLE, _git, ready, spec_for
from tests.testenv.samples import TWO_STEPS

from stepflow.gitops import conditions as cond
from stepflow.gitops.spec import PipelineSpec
from stepflow.storage import open_store


async def test_first_reconcile_publishes_and_requests_one_execution_then_nothing(world):
    repo, reconciler, _ = world
    out = await reconciler.reconcile("churn", spec_for(repo), {})
    assert ready(out.status)["status"] == "True"
    d = out.status["definition"]
    assert d["pipelineName"] == "churn" and d["steps"] == 6 and d["uploadedFiles"] > 0
    assert out.execution is not None and out.execution.trigger == "NewRevision"
    assert out.status["summary"]["revision"] == out.status["source"]["commit"][:7]
    again = await reconciler.reconcile("churn", spec_for(repo), out.status)
    assert again.execution is None and again.events == []
    assert again.status["lastBuild"] == out.status["lastBuild"], "an unchanged commit must not rebuild"


async def test_commit_that_does_not_touch_the_pipeline_uploads_nothing_and_runs_nothing(world):
    repo, reconciler, _ = world
    first = await reconciler.reconcile("churn", spec_for(repo), {})
    repo.commit({"README.md": "churn, documented\n"})
    second = await reconciler.reconcile("churn", spec_for(repo), first.status)
    assert second.status["source"]["commit"] != first.status["source"]["commit"]
    assert second.status["definition"]["digest"] == first.status["definition"]["digest"]
    assert second.status["definition"]["uploadedFiles"] == 0
    assert second.execution is None
    assert ready(second.status)["status"] == "True"


async def test_changed_pipeline_gets_a_new_digest_and_an_execution(world):
    repo, reconciler, _ = world
    first = await reconciler.reconcile("churn", spec_for(repo), {})
    repo.commit({"pipelines/churn.py": EXAMPLE.read_text().replace("default_value=150", "default_value=120")})
    second = await reconciler.reconcile("churn", spec_for(repo), first.status)
    assert second.status["definition"]["digest"] != first.status["definition"]["digest"]
    assert second.execution is not None and second.execution.definition_digest == second.status["definition"]["digest"]
    assert second.execution.name != first.execution.name


async def test_broken_commit_keeps_the_last_good_definition_and_says_where(world):
    repo, reconciler, _ = world
    first = await reconciler.reconcile("churn", spec_for(repo), {})
    repo.commit({"pipelines/churn.py": "def broken(:\n    pass\n"})
    second = await reconciler.reconcile("churn", spec_for(repo), first.status)
    r = ready(second.status)
    assert r["status"] == "False" and r["reason"] == "SyntaxError"
    assert "pipelines/churn.py:1" in r["message"] and "last good definition" in r["message"]
    assert cond.is_true(second.status["conditions"], "Stalled")
    assert second.status["definition"] == first.status["definition"]
    assert second.execution is None
    assert [e.reason for e in second.events if e.type == "Warning"] == ["SyntaxError"]


async def test_invalid_spec_and_missing_branch_are_reported_specifically(world):
    repo, reconciler, _ = world
    bad_cron = await reconciler.reconcile("churn", spec_for(repo, trigger={"schedule": "every day"}), {})
    assert ready(bad_cron.status)["reason"] == "InvalidSchedule"
    missing = await reconciler.reconcile(
        "churn", {**spec_for(repo), "source": {"url": str(repo.path), "ref": {"branch": "nope"}}}, {})
    r = ready(missing.status)
    assert r["status"] == "False" and r["reason"] == "RefNotFound" and "'nope'" in r["message"]
    assert cond.is_true(missing.status["conditions"], "Reconciling")  # retried on the interval


async def test_reconcile_request_forces_a_rebuild_and_is_echoed(world):
    repo, reconciler, _ = world
    first = await reconciler.reconcile("churn", spec_for(repo), {})
    forced = await reconciler.reconcile("churn", spec_for(repo), first.status, requested_at="now-1")
    assert forced.status["lastHandledReconcileAt"] == "now-1"
    assert forced.status["lastBuild"]["startedAt"] >= first.status["lastBuild"]["startedAt"]
    assert forced.status["definition"]["uploadedFiles"] == 0
    assert forced.execution is None


async def test_schedule_requests_an_execution_when_due(world):
    repo, reconciler, _ = world
    spec = spec_for(repo, trigger={"onChange": False, "schedule": "*/5 * * * *"})
    t0 = datetime(2026, 1, 1, 3, 2, tzinfo=UTC)
    first = await reconciler.reconcile("churn", spec, {}, now=t0)
    assert first.execution is None and first.status["nextScheduleTime"] == "2026-01-01T03:05:00Z"
    later = await reconciler.reconcile("churn", spec, first.status, now=t0 + timedelta(minutes=4))
    assert later.execution is not None and later.execution.trigger == "Schedule"
    assert later.status["lastScheduleTime"] == "2026-01-01T03:05:00Z"
    assert later.status["nextScheduleTime"] == "2026-01-01T03:10:00Z"


async def test_signed_build_runs_with_the_key(world, monkeypatch):
    repo, reconciler, base = world
    key = bytes.fromhex("ab" * 32)
    reconciler.integrity_key = key
    out = await reconciler.reconcile("churn", spec_for(repo), {})
    metadata = [p for p in (base / "store").rglob("metadata.json")]
    assert metadata and all(b"hmac_sha256" in p.read_bytes() for p in metadata)
    monkeypatch.setenv("STEPFLOW_INTEGRITY_KEY", key.hex())
    from stepflow.backends.local import LocalBackend

    backend = LocalBackend(open_store((base / "store").as_uri()), run_dir=base / "runs")
    request = out.execution
    backend.create_execution(request.pipeline_name, parameters=request.parameters, execution_id=request.name)
    state = backend.run(request.pipeline_name, request.name)
    assert state.status == "Succeeded"
    assert backend.result("churn", request.name, "register")["approved"] is True


async def test_new_trigger_parameters_run_again_without_a_code_change(world):
    repo, reconciler, _ = world
    first = await reconciler.reconcile("churn", spec_for(repo), {}, generation=1)
    same = await reconciler.reconcile("churn", spec_for(repo), first.status, generation=2)
    assert same.execution is None, "a spec edit that changes nothing deployed must not run"
    edited = spec_for(repo, trigger={"parameters": {"Epochs": 20}})
    second = await reconciler.reconcile("churn", edited, same.status, generation=3)
    assert second.execution is not None and second.execution.parameters == {"Epochs": 20}
    assert second.execution.name != first.execution.name
    assert second.status["definition"]["digest"] == first.status["definition"]["digest"]


def _count_builds(reconciler, monkeypatch) -> list:
    """Every build the reconciler starts, recorded (the real sandbox still runs them)."""
    builds: list = []
    real = reconciler.sandbox.build

    async def counting(request):
        builds.append(request)
        return await real(request)

    monkeypatch.setattr(reconciler.sandbox, "build", counting)
    return builds


async def test_a_failed_publish_is_retried_from_the_kept_build_until_the_bucket_exists(
        world, s3_server, monkeypatch):
    """Issue 15, point 1: a store failure is infrastructure. The next pass publishes the same
    build again after a growing backoff, without fetching or building it again."""
    repo, reconciler, _ = world
    for key, value in s3_server.env().items():
        monkeypatch.setenv(key, value)
    builds = _count_builds(reconciler, monkeypatch)
    reconciler.integrity_key = bytes.fromhex("cd" * 32)  # the kept bundle is signed once, published as is
    bucket = f"later-{secrets.token_hex(4)}"
    spec = spec_for(repo, s3RootUri=f"s3://{bucket}/stepflow")
    reconciler.targets.s3_endpoint_url = s3_server.endpoint_url
    first = await reconciler.reconcile("churn", spec, {}, namespace="team")
    r = ready(first.status)
    assert (r["status"], r["reason"]) == ("False", "BucketNotFound"), r
    assert cond.get_condition(first.status["conditions"], "Reconciling")["reason"] == "ProgressingWithRetry"
    assert not cond.is_true(first.status["conditions"], "Stalled") and first.execution is None
    assert first.requeue_after is not None and first.requeue_after <= 1.0, "the first retry comes soon"
    second = await reconciler.reconcile("churn", spec, first.status, namespace="team")
    assert ready(second.status)["reason"] == "BucketNotFound"
    assert 1.0 < second.requeue_after <= 2.0, "the backoff grows"
    s3_server.client().create_bucket(Bucket=bucket)
    try:
        third = await reconciler.reconcile("churn", spec, second.status, namespace="team")
        assert ready(third.status)["status"] == "True", ready(third.status)
        assert third.status["definition"]["uploadedFiles"] > 0 and third.execution is not None
        assert len(builds) == 1, "the retries published the kept build; nothing was built again"
        assert third.status["lastBuild"] == first.status["lastBuild"]
        assert not any(reconciler.pending.root.iterdir()), "a published build is not kept"
    finally:
        s3_server.delete_bucket(bucket)


async def test_a_frozen_store_shows_reconciling_then_times_out_then_recovers(world, s3, monkeypatch):
    """Issue 15, point 2: while the store hangs the status says Reconciling (not the old
    Ready=True); every call has a deadline, whose expiry is a retried ``StoreTimeout`` that
    names the endpoint and the limits; after the server thaws, the kept build is published."""
    repo, reconciler, _ = world
    for key, value in s3.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("STEPFLOW_S3_TIMEOUT", "1")
    monkeypatch.setenv("STEPFLOW_S3_ATTEMPTS", "2")
    builds = _count_builds(reconciler, monkeypatch)
    reconciler.targets.s3_endpoint_url = s3.endpoint_url
    spec = spec_for(repo, s3RootUri=s3.root_uri)
    first = await reconciler.reconcile("churn", spec, {})
    assert ready(first.status)["status"] == "True"
    repo.commit({"pipelines/churn.py": EXAMPLE.read_text().replace("default_value=150", "default_value=120")}, "tweak")
    seen: list[dict] = []
    with contextlib.ExitStack() as thaw:

        async def progress(status):
            seen.append(status)
            if cond.get_condition(status["conditions"], "Reconciling")["message"].startswith("publishing"):
                thaw.enter_context(s3.server.process.frozen())  # built; the store hangs from now on

        second = await reconciler.reconcile("churn", spec, first.status, progress=progress)
    building, publishing = seen
    for status in seen:
        assert cond.is_true(status["conditions"], "Reconciling"), status["conditions"]
        assert ready(status)["status"] == "Unknown", "not the old Ready=True while work is under way"
    assert cond.get_condition(building["conditions"], "Reconciling")["reason"] == "Progressing"
    assert cond.get_condition(building["conditions"], "Reconciling")["message"].startswith("building main@sha1:")
    r = ready(second.status)
    assert (r["status"], r["reason"]) == ("False", "StoreTimeout"), r
    assert s3.endpoint_url in r["message"] and "at most 1 s" in r["message"], r["message"]
    assert cond.get_condition(second.status["conditions"], "Reconciling")["reason"] == "ProgressingWithRetry"
    third = await reconciler.reconcile("churn", spec, second.status)
    assert ready(third.status)["status"] == "True", ready(third.status)
    assert third.status["definition"]["digest"] != first.status["definition"]["digest"]
    assert len(builds) == 2, "v1 and v2 were built once each; the retry published the kept build"


async def test_two_resources_of_one_module_in_one_store_each_run_their_own_code(world):
    """Issue 15, point 4: ``prod`` on main and ``staging`` on dev build the same module (one
    pipeline name) into one bucket. Keyed by the resource, each publishes into its own folder
    and each execution runs its own definition and returns its own result (staging used to
    report its digest but run prod's code)."""
    repo, reconciler, _ = world
    reconciler.targets.per_resource = True  # as the operator's
    repo.commit({"pipelines/flow.py": TWO_STEPS.format(factor=1, name="flow")}, "prod")
    _git(repo.path, "checkout", "-q", "-b", "dev")
    repo.commit({"pipelines/flow.py": TWO_STEPS.format(factor=2, name="flow")}, "staging")
    _git(repo.path, "checkout", "-q", "main")
    specs = {"prod": spec_for(repo, module="pipelines/flow.py"),
             "staging": spec_for(repo, module="pipelines/flow.py",
                                 source={"url": str(repo.path), "ref": {"branch": "dev"}, "interval": "1m"})}
    published = {}
    for name, spec in specs.items():  # both publish, then both run: the order that mixed them up
        out = await reconciler.reconcile(name, spec, {}, namespace="team")
        assert ready(out.status)["status"] == "True", ready(out.status)
        published[name] = definition = out.status["definition"]
        assert definition["pipelineName"] == "flow", "the pipeline keeps the name its module gives it"
        assert f"/team/{name}/flow/" in definition["uri"], definition["uri"]
    assert published["prod"]["digest"] != published["staging"]["digest"]
    results = {}
    for name, spec in specs.items():
        backend = reconciler.targets.backend_for(PipelineSpec.from_manifest(spec, name=name, namespace="team"))
        assert backend.describe("flow")["DefinitionDigest"] == published[name]["digest"]
        state = backend.create_execution("flow", execution_id=f"{name}-run")
        final = await asyncio.to_thread(backend.run, "flow", state.execution_id)
        assert final.status == "Succeeded", final
        results[name] = backend.result("flow", state.execution_id, "total")
    assert results == {"prod": 10, "staging": 20}, "each ran its own code"
