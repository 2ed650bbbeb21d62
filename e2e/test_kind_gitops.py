"""git push to step status in a real cluster: the image, the chart and the operator together.

The same scenarios as tests/operator/test_operator_gitops.py, which CI runs against the local
control plane; here the operator is the chart's Deployment running the image built from
this tree, the store is a file:// root on its cache emptyDir, and git is served in-cluster.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

from tests.testenv.samples import TWO_STEPS

from e2e.cluster import Cluster, Release, wait_for

TERMINAL = ("Succeeded", "Failed", "Stopped")
STORE = "file:///var/cache/stepflow/store"


def pipeline_manifest(name: str, url: str) -> dict:
    return {"apiVersion": "stepflow.dev/v1alpha1", "kind": "Pipeline", "metadata": {"name": name},
            "spec": {"source": {"url": url, "ref": {"branch": "main"}, "interval": "2s"},
                     "module": "pipelines/flow.py"}}


def table(cluster: Cluster, namespace: str, kind: str) -> list[dict[str, str]]:
    """``kubectl get KIND`` as rows keyed by column header, cut at the headers' offsets."""
    lines = cluster.kubectl("-n", namespace, "get", kind).stdout.splitlines()
    header = lines[0]
    # a column starts after a run of spaces ("LAST RUN" holds just one)
    starts = [i for i, ch in enumerate(header) if ch != " " and (i == 0 or header[i - 2:i] == "  ")]
    names = [header[a:b].strip() for a, b in zip(starts, starts[1:] + [None], strict=False)]
    return [{n: line[a:b].strip() for n, a, b in zip(names, starts, starts[1:] + [None], strict=False)}
            for line in lines[1:]]


def ready(pipeline: dict) -> dict:
    conditions = (pipeline.get("status") or {}).get("conditions") or ()
    return next((c for c in conditions if c["type"] == "Ready"), {})


def wait_status(cluster: Cluster, namespace: str, name: str, what: str, check: Any, timeout: float = 180) -> dict:
    """The Pipeline once ``check(pipeline)`` holds."""
    def matching() -> dict | None:
        pipeline = cluster.get(namespace, "pipeline", name)
        return pipeline if check(pipeline) else None
    return wait_for(matching, timeout, f"Pipeline {name}: {what}")


def executions_of(cluster: Cluster, namespace: str, pipeline: str) -> list[dict]:
    return cluster.get(namespace, "pipelineexecutions", selector=f"stepflow.dev/pipeline={pipeline}")["items"]


def wait_ended(cluster: Cluster, namespace: str, execution: str, timeout: float = 300) -> dict:
    def ended() -> dict | None:
        found = cluster.get(namespace, "pipelineexecution", execution)
        return found if (found.get("status") or {}).get("phase") in TERMINAL else None
    done = wait_for(ended, timeout, f"PipelineExecution {execution} to end")
    assert done["status"]["phase"] == "Succeeded", done["status"]
    return done


def test_push_builds_runs_and_shows_in_kubectl(cluster, operator: Release, namespace, repo):
    flow = repo("flow")
    name = f"flow-{secrets.token_hex(2)}"
    first = flow.commit({"pipelines/flow.py": TWO_STEPS.format(factor=1, name=name)}, "v1")
    cluster.apply(namespace, pipeline_manifest(name, flow.url))

    cluster.kubectl("-n", namespace, "wait", "--for=condition=Ready", f"pipeline/{name}", "--timeout=300s",
                    timeout=320)
    status = cluster.get(namespace, "pipeline", name)["status"]
    assert status["source"]["revision"] == f"main@sha1:{first}"
    assert status["summary"]["revision"] == first[:7]
    assert status["definition"]["steps"] == 2 and status["definition"]["pipelineName"] == name

    execution = wait_for(lambda: executions_of(cluster, namespace, name), 120, "the first execution")[0]
    done = wait_ended(cluster, namespace, execution["metadata"]["name"])
    assert [(s["name"], s["phase"], s["attempts"]) for s in done["status"]["steps"]] == [
        ("make", "Succeeded", 1), ("total", "Succeeded", 1)]
    assert done["status"]["definitionDigest"] == status["definition"]["digest"]
    result = next(s for s in done["status"]["steps"] if s["name"] == "total")["resultUri"]
    # Each Pipeline resource has its own store, <root>/<namespace>/<name>, then the pipeline's folder.
    assert result.startswith(f"{STORE}/{namespace}/{name}/{name}/"), result
    listed = operator.exec("ls", result.removeprefix("file://")).stdout.split()
    assert "payload.pkl" in listed, listed

    wait_status(cluster, namespace, name, "summary 2/2",
                lambda p: (p.get("status") or {}).get("summary", {}).get("steps") == "2/2", 60)
    rows = {r["NAME"]: r for r in table(cluster, namespace, "pipelines")}
    assert list(rows[name]) == ["NAME", "REVISION", "READY", "PHASE", "STEPS", "LAST RUN", "AGE"]
    assert (rows[name]["REVISION"], rows[name]["READY"], rows[name]["PHASE"], rows[name]["STEPS"]) == (
        first[:7], "True", "Succeeded", "2/2"), rows[name]
    runs = {r["NAME"]: r for r in table(cluster, namespace, "pipelineexecutions")}
    row = runs[execution["metadata"]["name"]]
    assert list(row) == ["NAME", "PIPELINE", "PHASE", "STEPS", "STARTED", "DURATION", "AGE"]
    assert (row["PIPELINE"], row["PHASE"], row["STEPS"]) == (name, "Succeeded", "2/2"), row

    involved = {name, execution["metadata"]["name"]}
    reasons = {e["reason"] for e in cluster.get(namespace, "events")["items"]
               if e["involvedObject"].get("name") in involved}
    assert {"NewRevision", "ExecutionStarted", "ExecutionSucceeded"} <= reasons, reasons
    # It watches one namespace by name: kopf never tries to list namespaces (which its RBAC
    # does not grant), where it would retry a 403 for ~54 s before watching anything.
    assert 'cannot list resource "namespaces"' not in operator.logs(5000)


def test_change_noop_and_broken_commits(cluster, operator: Release, namespace, repo):
    flow = repo("evolve")
    name = f"evolve-{secrets.token_hex(2)}"
    flow.commit({"pipelines/flow.py": TWO_STEPS.format(factor=1, name=name), "README.md": "v1\n"}, "v1")
    cluster.apply(namespace, pipeline_manifest(name, flow.url))
    cluster.kubectl("-n", namespace, "wait", "--for=condition=Ready", f"pipeline/{name}", "--timeout=300s",
                    timeout=320)
    first_digest = cluster.get(namespace, "pipeline", name)["status"]["definition"]["digest"]
    wait_ended(cluster, namespace, wait_for(lambda: executions_of(cluster, namespace, name), 120,
                                            "the first execution")[0]["metadata"]["name"])

    # a change to the pipeline: a new definition, run with its digest
    second = flow.commit({"pipelines/flow.py": TWO_STEPS.format(factor=2, name=name)}, "v2")
    pipeline = wait_status(cluster, namespace, name, f"Ready on {second[:7]}",
                           lambda p: p.get("status", {}).get("summary", {}).get("revision") == second[:7]
                           and ready(p).get("status") == "True")
    digest = pipeline["status"]["definition"]["digest"]
    assert digest != first_digest
    run = wait_for(lambda: [e for e in executions_of(cluster, namespace, name)
                            if (e.get("status") or {}).get("definitionDigest") == digest], 120,
                   "an execution of the new definition")[0]
    wait_ended(cluster, namespace, run["metadata"]["name"])

    # a commit that leaves the pipeline alone: nothing uploaded, nothing run
    third = flow.commit({"README.md": "v3\n"}, "docs only")
    pipeline = wait_status(cluster, namespace, name, f"Ready on {third[:7]}",
                           lambda p: p.get("status", {}).get("summary", {}).get("revision") == third[:7]
                           and ready(p).get("status") == "True")
    assert pipeline["status"]["definition"]["digest"] == digest
    assert pipeline["status"]["definition"]["uploadedFiles"] == 0
    stamp = f"{time.time():.6f}"
    cluster.kubectl("-n", namespace, "annotate", "--overwrite", f"pipeline/{name}",
                    f"stepflow.dev/reconcile-requested-at={stamp}")
    wait_status(cluster, namespace, name, f"reconcile request {stamp} handled",
                lambda p: p.get("status", {}).get("lastHandledReconcileAt") == stamp, 60)
    assert len(executions_of(cluster, namespace, name)) == 2

    # a broken module: Ready=False with the specific reason; the last good definition stays
    broken = flow.commit({"pipelines/flow.py": "def oops(:\n"}, "broken")
    pipeline = wait_status(cluster, namespace, name, "Ready=False on the broken commit",
                           lambda p: p.get("status", {}).get("source", {}).get("commit") == broken
                           and ready(p).get("status") == "False")
    condition = ready(pipeline)
    assert condition["reason"] == "SyntaxError", condition
    assert "pipelines/flow.py" in condition["message"], condition
    assert pipeline["status"]["lastBuild"]["line"] == 1
    assert pipeline["status"]["definition"]["digest"] == digest
    row = {r["NAME"]: r for r in table(cluster, namespace, "pipelines")}[name]
    assert row["READY"] == "False", row
    events = cluster.get(namespace, "events")["items"]
    assert any(e["involvedObject"].get("name") == name and e["reason"] == "SyntaxError" and e["type"] == "Warning"
               for e in events)
