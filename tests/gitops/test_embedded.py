"""The embedded GitOps loop (``stepflow up``'s engine) against real git, real builds, real steps.

Each test pushes the churn example (``examples/churn``) to a real bare repository, points a
manifest at it and runs :class:`EmbeddedLoop` with the real reconciler: git, the sandboxed
build, publish, the local backend's step processes. A fresh loop on the same store stands
for a restarted ``stepflow up``.
"""

from __future__ import annotations

import asyncio
import textwrap
from pathlib import Path

import pytest
from tests.testenv import wait_for

from stepflow.gitops.embedded import EmbeddedLoop
from stepflow.gitops.execution_status import steps_summary
from stepflow.gitops.manifests import discover
from stepflow.gitops.reconciler import Reconciler
from stepflow.gitops.sandbox import SandboxSettings
from stepflow.gitops.up_state import merge_status
from stepflow.layout import UP_STATE_FOLDER as STATE_PREFIX
from stepflow.storage import open_store

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "churn"
CHURN = "pipelines/churn.py"


def example_files() -> dict[str, str]:
    return {str(p.relative_to(EXAMPLE)): p.read_text() for p in EXAMPLE.rglob("*.py")
            if "__pycache__" not in p.parts}


def manifest(name: str, url: str, *, extra: str = "", rows: int = 300, epochs: int = 20,
             module: str = CHURN) -> str:
    parameters = f"{{Rows: {rows}, Epochs: {epochs}}}" if module == CHURN else "{}"
    return textwrap.dedent(f"""\
        apiVersion: stepflow.dev/v1alpha1
        kind: Pipeline
        metadata: {{name: {name}}}
        spec:
          source: {{url: "{url}", ref: {{branch: main}}, interval: 1m}}
          module: {module}
          trigger: {{parameters: {parameters}}}
        """) + extra


class Env:
    """A manifests folder, a store and a work dir; ``loop()`` is a fresh ``stepflow up``."""

    def __init__(self, tmp_path: Path) -> None:
        self.manifests = tmp_path / "manifests"
        self.manifests.mkdir()
        self.root_uri = (tmp_path / "store").as_uri()
        self.store = open_store(self.root_uri)
        self.work_dir = tmp_path / "work"
        self.events: list[tuple[str, str, str]] = []

    def write(self, filename: str, text: str) -> Path:
        path = self.manifests / filename
        path.write_text(text)
        return path

    def loop(self, **kwargs) -> EmbeddedLoop:
        reconciler = Reconciler(work_dir=self.work_dir, default_s3_root_uri=self.root_uri,
                                sandbox_settings=SandboxSettings(work_dir=self.work_dir / "sandbox",
                                                                 uid=None, gid=None))
        return EmbeddedLoop(self.manifests, reconciler=reconciler, state_store=self.store,
                            on_event=lambda name, e: self.events.append((name, e.reason, e.message)), **kwargs)

    def once(self) -> EmbeddedLoop:
        loop = self.loop()
        self.events.clear()
        try:
            asyncio.run(loop.run_once())
        finally:
            loop.reconciler.close()  # its warm build worker: one per loop would pile up
        return loop

    def reasons(self) -> list[str]:
        return [reason for _, reason, _ in self.events]

    def keys(self) -> dict[str, int]:
        """Every object in the store but up's own state, with its size."""
        return {info.key: info.size for info in self.store.list("") if not info.key.startswith(STATE_PREFIX)}


@pytest.fixture
def env(tmp_path, monkeypatch, step_env) -> Env:
    monkeypatch.delenv("STEPFLOW_INTEGRITY_KEY", raising=False)
    return Env(tmp_path)


def ready(status: dict) -> dict:
    return next(c for c in status["conditions"] if c["type"] == "Ready")


def test_example_runs_then_an_unchanged_repository_costs_nothing(env, git_remote):
    sha = git_remote.commit(example_files(), "churn example")
    env.write("churn.yaml", manifest("churn", git_remote.file_url))

    loop = env.once()
    status = loop.statuses()["churn"]
    assert ready(status)["status"] == "True", status
    assert status["source"]["commit"] == sha and status["summary"]["revision"] == sha[:7]
    assert status["lastExecution"]["phase"] == "Succeeded"
    assert status["lastExecution"]["revision"] == f"main@sha1:{sha}"
    phases = {s["name"]: s["phase"] for s in status["steps"]}
    assert phases == {"preprocess": "Succeeded", "train": "Succeeded", "evaluate": "Succeeded",
                      "accuracy-gate": "Succeeded", "register": "Succeeded", "accuracy-too-low": "Skipped"}
    assert status["summary"]["steps"] == "6/6"
    register = next(s for s in status["steps"] if s["name"] == "register")
    assert register["resultUri"].startswith(env.root_uri) and register["attempts"] == 1
    assert [r.phase for r in loop.reports] == ["Succeeded"] and loop.healthy()
    backend = loop.backend("churn")
    assert backend.result("churn", status["lastExecution"]["name"], "register")["approved"] is True

    before = env.keys()
    build = status["lastBuild"]
    again = env.once()  # a restarted `up`: state comes from the store
    status2 = again.statuses()["churn"]
    assert again.reports == [], "nothing new: no execution"
    assert status2["lastBuild"] == build, "nothing new: no build"
    assert "DefinitionPublished" not in env.reasons() and "ExecutionStarted" not in env.reasons()
    assert env.keys() == before, "nothing new: no upload"
    assert status2["lastExecution"] == status["lastExecution"] and again.healthy()
    row = again.rows()[0]
    assert (row.name, row.revision, row.ready, row.phase, row.steps) == ("churn", sha[:7], "True", "Succeeded", "6/6")


def test_commits_that_change_the_definition_run_and_others_do_not(env, git_remote):
    git_remote.commit(example_files(), "churn example")
    env.write("churn.yaml", manifest("churn", git_remote.file_url))
    first = env.once().statuses()["churn"]

    unrelated = git_remote.commit({"README.md": "# churn\n"}, "docs only")
    loop = env.once()
    status = loop.statuses()["churn"]
    assert status["source"]["commit"] == unrelated
    assert status["definition"]["digest"] == first["definition"]["digest"]
    assert status["definition"]["uploadedFiles"] == 0
    assert loop.reports == [] and "ExecutionStarted" not in env.reasons()
    assert status["lastExecution"] == first["lastExecution"]

    source = example_files()[CHURN].replace("learning_rate: float = 0.5", "learning_rate: float = 0.4")
    changed = git_remote.commit({CHURN: source}, "slower learning")
    loop = env.once()
    status = loop.statuses()["churn"]
    assert status["definition"]["digest"] != first["definition"]["digest"]
    assert status["lastExecution"]["name"] != first["lastExecution"]["name"]
    assert status["lastExecution"]["revision"] == f"main@sha1:{changed}"
    assert status["lastExecution"]["phase"] == "Succeeded" and [r.phase for r in loop.reports] == ["Succeeded"]
    assert [h["name"] for h in loop.history("churn")] == [status["lastExecution"]["name"],
                                                          first["lastExecution"]["name"]]


def test_broken_module_fails_with_its_reason_and_keeps_the_last_good_definition(env, git_remote):
    git_remote.commit(example_files(), "churn example")
    env.write("churn.yaml", manifest("churn", git_remote.file_url))
    good = env.once().statuses()["churn"]

    broken = example_files()[CHURN].replace("def evaluate(model: dict, data: dict) -> dict:",
                                            "def evaluate(model: dict, data: dict) -> dict")
    line = broken.splitlines().index("def evaluate(model: dict, data: dict) -> dict") + 1
    git_remote.commit({CHURN: broken}, "oops")
    loop = env.once()
    status = loop.statuses()["churn"]
    condition = ready(status)
    assert condition["status"] == "False" and condition["reason"] == "SyntaxError"
    assert f"churn.py:{line}" in condition["message"] or status["lastBuild"]["line"] == line
    assert status["definition"] == good["definition"]
    assert loop.reports == [] and not loop.healthy()
    assert "SyntaxError" in loop.rows()[0].message


def test_bad_manifest_does_not_stop_the_others(env, git_remote):
    git_remote.commit(example_files(), "churn example")
    env.write("good.yaml", manifest("churn", git_remote.file_url))
    env.write("typo.yaml", manifest("typo", git_remote.file_url).replace("module:", "modul:"))
    env.write("cron.yaml", manifest("cron", git_remote.file_url,
                                    extra="  suspend: false\n").replace(
        "trigger: {", "trigger: {schedule: 'every day', "))
    loop = env.once()
    assert list(loop.statuses()) == ["churn"]
    assert loop.statuses()["churn"]["lastExecution"]["phase"] == "Succeeded"
    problems = {p.path.name: p for p in loop.problems}
    assert set(problems) == {"typo.yaml", "cron.yaml"}
    assert "spec.modul" in problems["typo.yaml"].message and "spec.module" in problems["typo.yaml"].message
    assert problems["cron.yaml"].reason == "InvalidSchedule"
    assert str(problems["cron.yaml"]).startswith(str(env.manifests / "cron.yaml"))
    assert not loop.healthy()


def test_two_pipelines_run_at_once(env, git_remote):
    git_remote.commit(example_files(), "churn example")
    env.write("both.yaml", manifest("churn-a", git_remote.file_url) + "---\n"
              + manifest("churn-b", git_remote.file_url, rows=400))
    loop = env.once()
    statuses = loop.statuses()
    assert sorted(statuses) == ["churn-a", "churn-b"]
    runs = [statuses[n]["lastExecution"] for n in ("churn-a", "churn-b")]
    assert all(r["phase"] == "Succeeded" for r in runs)
    # Both executions were under way at the same time (each in its own thread).
    a, b = runs
    assert a["startedAt"] <= b["finishedAt"] and b["startedAt"] <= a["finishedAt"]


SLOW = '''
from stepflow.workflow.function_step import step
from stepflow.workflow.pipeline import Pipeline


@step(name="slow")
def slow() -> int:
    import time
    time.sleep(3)
    return 1


@step(name="after")
def after(x: int) -> int:
    return x + 1


pipeline = Pipeline(name="slowpipe", steps=[after(slow())])
'''


def test_stopping_leaves_the_execution_to_resume_without_rerunning_steps(env, git_remote):
    git_remote.commit({"pipelines/slow.py": SLOW}, "slow")
    env.write("slow.yaml", manifest("slow", git_remote.file_url, module="pipelines/slow.py"))

    async def until_running_then_stop() -> EmbeddedLoop:
        loop = env.loop()
        stop = asyncio.Event()
        task = asyncio.create_task(loop.run_forever(stop))
        await asyncio.to_thread(wait_for, lambda: any(
            s.get("name") == "slow" and s.get("phase") == "Executing"
            for s in loop.statuses().get("slow", {}).get("steps", [])), timeout=60,
            message="step slow to be Executing")
        stop.set()
        await task
        return loop

    stopped = asyncio.run(until_running_then_stop())
    assert stopped.statuses()["slow"]["lastExecution"]["phase"] == "Executing"

    resumed = env.once()  # the next `up` picks it up
    status = resumed.statuses()["slow"]
    assert status["lastExecution"]["phase"] == "Succeeded", status
    assert {s["name"]: s["attempts"] for s in status["steps"]} == {"slow": 1, "after": 1}
    assert [r.phase for r in resumed.reports] == ["Succeeded"]
    assert "ExecutionStarted" not in env.reasons()


def test_spec_change_bumps_the_generation_and_rebuilds(env, git_remote):
    git_remote.commit(example_files(), "churn example")
    env.write("churn.yaml", manifest("churn", git_remote.file_url))
    first = env.once().statuses()["churn"]
    assert first["observedGeneration"] == 1
    env.write("churn.yaml", manifest("churn", git_remote.file_url, rows=500))
    status = env.once().statuses()["churn"]
    assert status["observedGeneration"] == 2 and ready(status)["observedGeneration"] == 2
    assert status["lastBuild"]["startedAt"] >= first["lastBuild"]["startedAt"]


# -- pieces -------------------------------------------------------------------------------------


def test_discover_reads_multi_document_files_and_reports_each_problem(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "many.yml").write_text(textwrap.dedent("""\
        apiVersion: v1
        kind: ConfigMap
        metadata: {name: other}
        ---
        apiVersion: stepflow.dev/v1alpha1
        kind: Pipeline
        metadata: {name: a}
        spec: {source: {url: ../repo}, module: p.py}
        ---
        apiVersion: stepflow.dev/v1alpha1
        kind: Pipeline
        metadata: {name: a}
        spec: {source: {url: ../repo}, module: p.py}
        ---
        apiVersion: stepflow.dev/v1beta9
        kind: Pipeline
        metadata: {name: b}
        spec: {}
        """))
    (tmp_path / "broken.yaml").write_text("apiVersion: stepflow.dev/v1alpha1\nkind: [unclosed\n")
    (tmp_path / "notes.txt").write_text("not a manifest")
    # Not ours, so not problems: a Helm template, a list, another tool's Pipeline.
    (tmp_path / "chart").mkdir()
    (tmp_path / "chart" / "deployment.yaml").write_text('metadata:\n  labels:\n    {{- include "x" . | nindent 4 }}\n')
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    (tmp_path / "tekton.yaml").write_text("apiVersion: tekton.dev/v1\nkind: Pipeline\nmetadata: {name: t}\n")
    manifests, problems = discover(tmp_path)
    assert [(m.name, m.document) for m in manifests] == [("a", 2)]
    assert manifests[0].parsed.url == (tmp_path / "repo").resolve().as_uri()  # relative to the file
    messages = sorted(str(p) for p in problems)
    assert len(messages) == 3
    assert any("broken.yaml: is not valid YAML at line" in m for m in messages)
    assert any("(document 3)" in m and "already used" in m for m in messages)
    assert any("(document 4)" in m and "apiVersion" in m for m in messages)


def test_merge_status_keeps_the_loops_own_keys():
    current = {"lastExecution": {"name": "x"}, "steps": [{"name": "s", "phase": "Succeeded"}],
               "summary": {"revision": "old", "steps": "1/1"}, "definition": {"digest": "d1"}}
    merged = merge_status({"definition": {"digest": "d2"}, "summary": {"revision": "new"}}, current)
    assert merged == {"definition": {"digest": "d2"}, "lastExecution": {"name": "x"},
                      "steps": [{"name": "s", "phase": "Succeeded"}], "summary": {"revision": "new", "steps": "1/1"}}
    assert steps_summary([{"phase": "Succeeded"}, {"phase": "Skipped"}, {"phase": "Failed"}]) == "2/3"


def test_state_and_artifacts_in_the_s3_store(tmp_path, monkeypatch, git_remote, s3, step_env):
    for key, value in s3.env().items():  # the runtime's trusted part reads the store too
        monkeypatch.setenv(key, value)
    env = Env(tmp_path)
    env.root_uri = s3.root_uri
    env.store = open_store(s3.root_uri, s3.endpoint_url)
    sha = git_remote.commit(example_files(), "churn example")
    env.write("churn.yaml", manifest("churn", git_remote.file_url))

    status = env.once().statuses()["churn"]
    assert status["lastExecution"]["phase"] == "Succeeded" and status["summary"]["steps"] == "6/6"
    assert status["definition"]["uri"].startswith(s3.root_uri)
    saved = s3.client().get_object(Bucket=s3.bucket, Key=f"stepflow/{STATE_PREFIX}/churn.json")["Body"].read()
    assert f'"commit": "{sha}"' in saved.decode()

    again = env.once()
    assert again.reports == [] and again.statuses()["churn"]["lastExecution"] == status["lastExecution"]
