"""The operator end to end: a real operator process, API server, S3 server and git server.

``python -m stepflow_operator`` runs as a separate process, namespace-scoped to a fresh
namespace per test, so killing and restarting it is real. Its log is printed when a test
fails (pytest shows a fixture's teardown output for failed tests).
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

from tests.operator.world import World, pipeline_manifest, slow_pipeline, step_phase
from tests.testenv.samples import BAD_MODULES, TWO_STEPS, probe_module

# ---- the GitOps loop -----------------------------------------------------------------------

def test_a_pipeline_with_a_long_valid_name_executes(world, git_remote):
    """A 100-character name is valid; the label and execution names derived from it must fit."""
    name = "p" + "-long" * 19 + "-end"
    assert len(name) == 100
    git_remote.commit({"pipelines/flow.py": TWO_STEPS.format(factor=1, name="flow")}, "v1")
    world.apply(pipeline_manifest(name, git_remote.url))
    world.operator()
    world.wait_ready(name)
    executions = world.wait(lambda: world.items("pipelineexecutions"), 60, "a PipelineExecution")
    run = world.wait_execution(executions[0]["metadata"]["name"])
    assert run["status"]["phase"] == "Succeeded", run["status"]
    label = run["metadata"]["labels"]["stepflow.dev/pipeline"]
    assert len(label) <= 63 and label.startswith("p-long")
    assert run["metadata"]["ownerReferences"][0]["name"] == name
    assert "ReconcileError" not in {e["reason"] for e in world.events()}


def test_push_builds_runs_and_reports(world, git_remote):
    first = git_remote.commit({"pipelines/flow.py": TWO_STEPS.format(factor=1, name="flow"),
                               "README.md": "v1\n"}, "v1")
    world.apply(pipeline_manifest("flow", git_remote.url))
    world.operator()

    pipeline = world.wait_ready("flow", summary__revision=first[:7])
    definition = pipeline["status"]["definition"]
    assert definition["steps"] == 2 and definition["pipelineName"] == "flow"
    assert pipeline["status"]["source"]["revision"] == f"main@sha1:{first}"
    table = world.kubectl("get", "pipelines").stdout
    assert first[:7] in table.splitlines()[1] and "True" in table.splitlines()[1], table

    executions = world.wait(lambda: world.items("pipelineexecutions"), 30, "a PipelineExecution")
    assert len(executions) == 1
    run1 = world.wait_execution(executions[0]["metadata"]["name"])
    assert [s["phase"] for s in run1["status"]["steps"]] == ["Succeeded", "Succeeded"]
    assert run1["status"]["definitionDigest"] == definition["digest"]
    assert run1["metadata"]["ownerReferences"][0]["name"] == "flow"
    summary = world.wait(lambda: (s := world.get("pipeline", "flow")["status"]).get("summary", {}).get("steps") == "2/2"
                         and s, 20, "the Pipeline's step summary")
    assert summary["lastExecution"]["phase"] == "Succeeded"
    assert [s["name"] for s in summary["steps"]] == ["make", "total"]
    reasons = {e["reason"] for e in world.events()}
    assert {"NewRevision", "ExecutionStarted", "ExecutionSucceeded"} <= reasons, reasons

    # a change to the pipeline: a new definition, a new execution with the new digest
    second = git_remote.commit({"pipelines/flow.py": TWO_STEPS.format(factor=2, name="flow")}, "v2")
    pipeline = world.wait_ready("flow", summary__revision=second[:7], timeout=30)
    new_digest = pipeline["status"]["definition"]["digest"]
    assert new_digest != definition["digest"]
    run2 = world.wait(lambda: [e for e in world.items("pipelineexecutions")
                               if (e.get("status") or {}).get("definitionDigest") == new_digest], 30,
                      "an execution of the new definition")[0]
    world.wait_execution(run2["metadata"]["name"])

    # a commit that does not touch the pipeline: no upload, no execution
    third = git_remote.commit({"README.md": "v3\n"}, "docs only")
    pipeline = world.wait_ready("flow", summary__revision=third[:7], timeout=30)
    assert pipeline["status"]["definition"]["digest"] == new_digest
    assert pipeline["status"]["definition"]["uploadedFiles"] == 0
    assert pipeline["status"]["definition"]["uploadedBytes"] == 0
    _request_reconcile(world, "flow")  # a full pass after the one that saw the commit
    assert len(world.items("pipelineexecutions")) == 2

    # a broken module: the specific reason, the last good definition stays
    broken = git_remote.commit({"pipelines/flow.py": "def oops(:\n"}, "broken")
    pipeline = world.wait_ready("flow", "False", timeout=30, source__commit=broken)
    ready = next(c for c in pipeline["status"]["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "SyntaxError", ready
    assert "pipelines/flow.py" in ready["message"], ready
    assert pipeline["status"]["lastBuild"]["file"] == "pipelines/flow.py"
    assert pipeline["status"]["lastBuild"]["line"] == 1
    assert pipeline["status"]["definition"]["digest"] == new_digest
    assert any(e["reason"] == "SyntaxError" and e["type"] == "Warning" for e in world.events("flow"))


def _request_reconcile(world: World, name: str) -> None:
    stamp = f"{time.time():.6f}"
    world.kubectl("annotate", "--overwrite", "pipeline", name, f"stepflow.dev/reconcile-requested-at={stamp}")
    world.wait(lambda: world.get("pipeline", name)["status"].get("lastHandledReconcileAt") == stamp, 30,
               f"the reconcile request {stamp} echoed")


def test_restart_mid_execution_finishes_with_every_step_run_once(world, git_remote, traversable_dir):
    marks, name = slow_pipeline(world, git_remote, "restartable", traversable_dir)
    first_operator = world.operator()
    execution = world.wait(lambda: [e["metadata"]["name"] for e in world.items("pipelineexecutions")], 60,
                           "the execution")[0]
    world.wait(lambda: step_phase(world, execution, "slow") == "Executing", 60, "step slow running")

    first_operator.kill()
    second_operator = world.operator()
    world.wait(lambda: f"resuming execution {execution}" in second_operator.text(), 60,
               "the new operator resuming the execution")
    (marks / "go").write_text("")

    done = world.wait_execution(execution, timeout=60)
    assert [(s["name"], s["phase"], s["attempts"]) for s in done["status"]["steps"]] == [
        ("first", "Succeeded", 1), ("slow", "Succeeded", 1), ("last", "Succeeded", 1)]
    for step in ("first", "slow", "last"):
        assert (marks / step).read_text() == "ran\n", f"step {step} ran more than once"
    world.wait(lambda: world.get("pipeline", name)["status"].get("summary", {}).get("steps") == "3/3", 20,
               "the Pipeline's summary")


def test_deleting_a_pipeline_stops_its_running_execution(world, git_remote, traversable_dir):
    marks, name = slow_pipeline(world, git_remote, "doomed", traversable_dir)
    world.operator()
    execution = world.wait(lambda: [e["metadata"]["name"] for e in world.items("pipelineexecutions")], 60,
                           "the execution")[0]
    world.wait(lambda: step_phase(world, execution, "slow") == "Executing", 60, "step slow running")

    world.kubectl("delete", "pipeline", name, "--wait=true", timeout=60)
    stopped = world.wait_execution(execution, phase="Stopped", timeout=60)
    phases = {s["name"]: s["phase"] for s in stopped["status"]["steps"]}
    assert phases["first"] == "Succeeded" and phases["slow"] == "Stopped", phases
    assert not (marks / "last").exists()
    assert any(e["reason"] == "ExecutionStopped" for e in world.events(execution))


# ---- bad input: each a specific reason and an Event; the operator keeps serving ---------------

def test_bad_input_gets_a_specific_reason_and_the_operator_keeps_serving(world, kube, s3, git_server):
    from tests.testenv.git import GitRemote

    password = f"wrong-{secrets.token_hex(8)}"
    key_file = world.base / "integrity.key"
    key_file.write_text(secrets.token_hex(32))
    key_file.chmod(0o400)
    token_dir = world.base / "serviceaccount"
    token_dir.mkdir(mode=0o755)
    (token_dir / "token").write_text("sa-token-" + secrets.token_hex(8))
    (token_dir / "token").chmod(0o400)

    def repo(name: str, files: dict[str, str]) -> GitRemote:
        remote = GitRemote(git_server, f"bad-{name}-{secrets.token_hex(3)}")
        remote.commit(files, name)
        return remote

    good = repo("good", {"pipelines/flow.py": TWO_STEPS.format(factor=1, name="good")})
    plain = {"pipelines/flow.py": TWO_STEPS.format(factor=1, name="plain")}
    expected: dict[str, str] = {}
    manifests = [pipeline_manifest("good", good.url)]
    for name, (text, reason) in BAD_MODULES.items():
        spec: dict[str, Any] = {}
        if name == "loops-forever":
            spec["build"] = {"timeout": "3s"}
        if name == "allocates":
            spec["build"] = {"memoryLimit": "1Gi"}
        manifests.append(pipeline_manifest(name, repo(name, {"pipelines/flow.py": text}).url, **spec))
        expected[name] = reason
    shared = repo("shared", plain)
    private = repo("private", plain)
    private_url = private.http_url_with_auth("alice", "the-right-password")
    probe_paths = [str(token_dir / "token"), str(key_file), kube.kubeconfig]
    probe = repo("probe", {"pipelines/flow.py": probe_module(probe_paths, [b"AWS_SECRET_ACCESS_KEY", b"KUBECONFIG"])})
    others = {
        "missing-module": (pipeline_manifest("missing-module", shared.url, module="pipelines/nowhere.py"),
                           "ModuleNotFound"),
        "path-traversal": (pipeline_manifest("path-traversal", shared.url, module="../../etc/passwd"),
                           "InvalidModulePath"),
        "unreachable": (pipeline_manifest("unreachable", "http://127.0.0.1:9/nothing.git",
                                          source={"timeout": "5s"}), "GitOperationFailed"),
        "wrong-credentials": (pipeline_manifest("wrong-credentials", private_url,
                                                source={"secretRef": {"name": "git-wrong"}}),
                              "AuthenticationFailed"),
        "missing-secret": (pipeline_manifest("missing-secret", private_url,
                                             source={"secretRef": {"name": "not-there"}}), "SecretNotFound"),
        "missing-branch": (pipeline_manifest("missing-branch", shared.url, source={"ref": {"branch": "nope"}}),
                           "RefNotFound"),
        # passes the CRD's pattern, not the bucket naming rules
        "bad-s3-uri": (pipeline_manifest("bad-s3-uri", shared.url, s3RootUri="s3://a..b"), "InvalidS3RootUri"),
        "bad-cron": (pipeline_manifest("bad-cron", shared.url, trigger={"schedule": "61 * * * *"}),
                     "InvalidSchedule"),
        "probe": (pipeline_manifest("probe", probe.url), "ModuleError"),
    }
    for name, (manifest, reason) in others.items():
        manifests.append(manifest)
        expected[name] = reason
    world.kubectl("create", "secret", "generic", "git-wrong", "--from-literal=username=alice",
                  f"--from-literal=password={password}")
    for manifest in manifests:
        world.apply(manifest)
    op = world.operator(STEPFLOW_INTEGRITY_KEY_FILE=str(key_file))

    def reasons() -> dict[str, tuple[str, str]]:
        seen = {}
        for item in world.items("pipelines"):
            ready = next((c for c in (item.get("status") or {}).get("conditions") or () if c["type"] == "Ready"), {})
            seen[item["metadata"]["name"]] = (ready.get("status"), ready.get("reason"))
        return seen

    world.wait(lambda: all(reasons().get(n, (None, None))[0] == "False" for n in expected), 120,
               "every bad Pipeline Ready=False")
    got = {n: reasons()[n][1] for n in expected}
    assert got == expected
    events = world.events()
    for name, reason in expected.items():
        ready = world.condition(name)
        assert len(ready["message"]) > 20, (name, ready)
        assert any(e["involvedObject"]["name"] == name and e["reason"] == reason and e["type"] == "Warning"
                   for e in events), f"no Warning event {reason} on {name}"

    # the good one is served all along, and still is after all that
    world.wait_ready("good")
    execution = world.wait(lambda: [e["metadata"]["name"] for e in world.items("pipelineexecutions")
                                    if e["spec"]["pipelineRef"]["name"] == "good"], 30, "good's execution")[0]
    world.wait_execution(execution)
    again = good.commit({"pipelines/flow.py": TWO_STEPS.format(factor=3, name="good")}, "v2")
    world.wait_ready("good", summary__revision=again[:7], timeout=30)
    assert not any(e["metadata"]["name"].startswith(("syntax", "cycle")) for e in world.items("pipelineexecutions"))

    # user code in the build saw none of the operator's secrets
    message = world.get("pipeline", "probe")["status"]["lastBuild"]["message"]
    assert "probe {}" in message, message

    # secrets appear nowhere: not in status, events, the operator's log or the bucket
    secret_values = [password, s3.secret_key, key_file.read_text(), (token_dir / "token").read_text()]
    everything = [op.text(), world.kubectl("get", "pipelines,pipelineexecutions", "-o", "json").stdout,
                  json.dumps(events)]
    client = s3.client()
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=s3.bucket):
        for obj in page.get("Contents", []):
            everything.append(client.get_object(Bucket=s3.bucket, Key=obj["Key"])["Body"].read()
                              .decode("latin-1"))
    for value in secret_values:
        assert all(value not in text for text in everything), "a secret leaked"


# ---- manual executions and history ----------------------------------------------------------

PARAMETRISED = '''
from stepflow.workflow.function_step import step
from stepflow.workflow.parameters import ParameterInteger
from stepflow.workflow.pipeline import Pipeline

count = ParameterInteger(name="Count", default_value=3)


@step(name="square")
def square(n: int) -> int:
    return n * n


pipeline = Pipeline(name="manual", parameters=[count], steps=[square(count)])
'''


def _manual(name: str, pipeline: str, **spec: Any) -> dict:
    return {"apiVersion": "stepflow.dev/v1alpha1", "kind": "PipelineExecution", "metadata": {"name": name},
            "spec": {"pipelineRef": {"name": pipeline}, **spec}}


def test_manual_executions_run_the_current_definition_and_history_is_pruned(world, git_remote):
    commit = git_remote.commit({"pipelines/flow.py": PARAMETRISED}, "manual")
    world.apply(pipeline_manifest("manual", git_remote.url, historyLimit=2, trigger={"onChange": False}))
    world.operator()
    world.wait_ready("manual")

    world.apply(_manual("by-hand-1", "manual", parameters={"Count": 7}))
    first = world.wait_execution("by-hand-1")
    assert first["status"]["parameters"] == {"Count": 7}
    assert first["status"]["revision"] == f"main@sha1:{commit}"
    assert first["status"]["steps"][0]["resultUri"].endswith("/manual/by-hand-1/square/results")
    assert world.get("pipeline", "manual")["status"]["lastExecution"]["name"] == "by-hand-1"

    world.apply(_manual("by-hand-2", "manual", revision=commit[:7]))
    world.wait_execution("by-hand-2")
    world.apply(_manual("by-hand-3", "manual"))
    world.wait_execution("by-hand-3")
    world.wait(lambda: sorted(e["metadata"]["name"] for e in world.items("pipelineexecutions"))
               == ["by-hand-2", "by-hand-3"], 30, "historyLimit 2 keeping the newest two")
    assert world.get("pipeline", "manual")["status"]["lastExecution"]["name"] == "by-hand-3"

    world.apply(_manual("old-revision", "manual", revision="0" * 40))
    failed = world.wait_execution("old-revision", phase="Failed", timeout=30)
    assert failed["status"]["failureReason"] == "RevisionNotAvailable"
    world.apply(_manual("orphan", "no-such-pipeline"))
    orphan = world.wait_execution("orphan", phase="Failed", timeout=30)
    assert orphan["status"]["failureReason"] == "PipelineNotFound"
    assert "no-such-pipeline" in orphan["status"]["message"]
    assert any(e["reason"] == "PipelineNotFound" for e in world.events("orphan"))


ENV_PROBE = '''
import os

from stepflow.workflow.function_step import step
from stepflow.workflow.pipeline import Pipeline


@step(name="probe")
def probe() -> list:
    return sorted(os.environ)


pipeline = Pipeline(name="envprobe", steps=[probe()])
'''


def test_steps_see_nothing_of_the_operator_not_even_the_store_credentials(world, git_remote, s3, monkeypatch):
    git_remote.commit({"pipelines/flow.py": ENV_PROBE}, "probe")
    world.apply(pipeline_manifest("envprobe", git_remote.url))
    world.operator(STEPFLOW_OPERATOR_TEST_SECRET="do-not-leak")
    executions = world.wait(lambda: world.items("pipelineexecutions"), 60, "a PipelineExecution")
    name = executions[0]["metadata"]["name"]
    world.wait_execution(name)

    from stepflow.backends.local import LocalBackend
    from stepflow.storage import open_store

    for key, value in s3.env().items():
        monkeypatch.setenv(key, value)
    seen = LocalBackend(open_store(f"{s3.root_uri}/{world.namespace}/envprobe")).result("envprobe", name, "probe")
    # The runtime's trusted part talks to the store; the step's code gets no credentials.
    assert "AWS_ACCESS_KEY_ID" not in seen and "AWS_SECRET_ACCESS_KEY" not in seen
    assert "AWS_DEFAULT_REGION" in seen  # declared by every @step (its Environment)
    leaked = [k for k in seen if k.startswith(("KUBE", "STEPFLOW_OPERATOR", "STEPFLOW_S3_ROOT", "STEPFLOW_INTEGRITY"))]
    assert leaked == [], f"step processes must not see the operator's settings: {leaked}"
