"""``collect_garbage`` and ``stepflow gc`` on real stores: three published versions of a pipeline.

Each version changes ``train``'s code and leaves ``prep`` alone, so ``prep`` keeps the folder
of the first version (through the published index) and gc must not delete it.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path
from typing import Any

import pytest

from stepflow.backends.local import LocalBackend
from stepflow.compiler import compile_pipeline
from stepflow.compiler.gc import GcReport, collect_garbage
from stepflow.compiler.loader import load_pipeline
from stepflow.compiler.publish import PublishReport, publish, read_index
from stepflow.errors import StorageError, ValidationError
from stepflow.storage import ObjectStore, open_store

NAME = "gcdemo"
STEPFLOW = str(Path(sys.executable).parent / "stepflow")
EPOCH = 1_700_000_000
_MODULES = itertools.count()

COMMON = """
from stepflow.workflow.function_step import step


@step
def prep():
    return [1, 2, 3]
"""

SOURCE = """
from stepflow.workflow.function_step import step
from stepflow.workflow.pipeline import Pipeline

from {common} import prep


@step
def train(data):
    return sum(data) * {version}


pipeline = Pipeline(name="{name}", steps=[train(prep())])
"""


@dataclass
class Deployed:
    root: str
    store: ObjectStore
    backend: LocalBackend
    digests: list[str]
    pipeline: Any = None


@pytest.fixture(params=["file", "s3"])
def root(request, tmp_path, monkeypatch, step_env) -> str:
    if request.param == "file":
        return (tmp_path / "store").as_uri()
    s3 = request.getfixturevalue("s3")
    for key, value in s3.env().items():
        monkeypatch.setenv(key, value)
    return s3.root_uri


@pytest.fixture
def deploy(root, tmp_path, monkeypatch):
    """deploy(version) publishes and upserts that version; returns the publish report."""
    store = open_store(root)
    monkeypatch.setenv("STEPFLOW_S3_ROOT_URI", root)
    state = Deployed(root, store, LocalBackend(store, run_dir=tmp_path / "runs"), [])

    # Module names must not repeat in-process; ``prep`` lives in one module imported once,
    # so every version pickles it to the same bytes, as separate builds of one repo do.
    project = tmp_path / "project"
    project.mkdir()
    common = f"gc_common_{next(_MODULES)}"
    (project / f"{common}.py").write_text(COMMON)

    def make(version: int | None) -> PublishReport:
        """Publish and upsert a new version, or with None, rebuild the last one loaded."""
        if version is not None:
            monkeypatch.setenv("SOURCE_DATE_EPOCH", str(EPOCH + 100 * version))
            path = project / f"gc_pipe_{next(_MODULES)}.py"
            path.write_text(SOURCE.format(common=common, version=version, name=NAME))
            state.pipeline = load_pipeline(path.name, workdir=project)
        bundle = compile_pipeline(state.pipeline, s3_root_uri=root,
                                  out_dir=str(tmp_path / f"bundle-{next(_MODULES)}"),
                                  previous_index=read_index(store, NAME))
        report = publish(bundle, store)
        state.backend.upsert(bundle, store)
        state.digests.append(bundle.digest.split(":", 1)[1])
        return report

    make.state = state  # type: ignore[attr-defined]
    return make


def _sizes(store: ObjectStore) -> dict[str, int]:
    return {info.key: info.size for info in store.list(f"{NAME}/")}


def _folders(store: ObjectStore, step: str) -> set[str]:
    return {info.key.split("/")[2] for info in store.list(f"{NAME}/{step}/")}


def _definitions(store: ObjectStore) -> set[str]:
    prefix = f"{NAME}/.stepflow/definitions/"
    return {info.key[len(prefix):-len(".json")] for info in store.list(prefix)}


def _ts(version: int) -> str:
    from datetime import datetime

    return datetime.fromtimestamp(EPOCH + 100 * version, UTC).strftime("%Y-%m-%d-%H-%M-%S-000")


def test_keep_one_leaves_only_the_current_version_which_still_runs(deploy):
    for version in (1, 2, 3):
        deploy(version)
    d: Deployed = deploy.state
    assert _folders(d.store, "train") == {_ts(1), _ts(2), _ts(3)}
    assert _folders(d.store, "prep") == {_ts(1)}
    before = _sizes(d.store)

    preview = collect_garbage(d.store, NAME, keep=1, dry_run=True)
    assert _sizes(d.store) == before  # a dry run deletes and rewrites nothing
    report = collect_garbage(d.store, NAME, keep=1)
    assert report == preview
    after = _sizes(d.store)
    gone = set(before) - set(after)
    assert report == GcReport(kept_definitions=1, deleted_definitions=2, deleted_objects=len(gone),
                              deleted_bytes=sum(before[k] for k in gone), kept_objects=len(after))
    assert set(after) <= set(before)
    assert _folders(d.store, "train") == {_ts(3)}
    assert _folders(d.store, "prep") == {_ts(1)}  # shared by the current version: kept
    assert _definitions(d.store) == {d.digests[-1]}
    assert any(k.startswith(f"{NAME}/sagemaker_remote_function_bootstrap/") for k in after)

    index = read_index(d.store, NAME)
    meta = f"{NAME}/.stepflow/"
    assert set(index) == {k for k in after if not k.startswith(meta)
                          or k.startswith(f"{meta}definitions/")}
    assert all(d.store.head(k).sha256 == sha for k, sha in index.items())

    again = deploy(None)  # the same build again: everything it needs is still published
    assert (again.uploaded_files, again.uploaded_bytes, again.definition_written) == (0, 0, False)
    assert _sizes(d.store) == after

    execution_id = d.backend.start(NAME)
    assert d.backend.wait(NAME, execution_id, timeout=120)["PipelineExecutionStatus"] == "Succeeded"
    assert d.backend.result(NAME, execution_id, "train") == 18

    second = collect_garbage(d.store, NAME, keep=1)
    assert (second.deleted_objects, second.deleted_definitions, second.deleted_bytes) == (0, 0, 0)
    assert second.kept_definitions == 1


def test_unfinished_executions_keep_their_definition_and_finished_ones_their_record(deploy):
    deploy(1)
    d: Deployed = deploy.state
    finished = d.backend.start(NAME)
    assert d.backend.wait(NAME, finished, timeout=120)["PipelineExecutionStatus"] == "Succeeded"
    deploy(2)
    # Executing and never run (start() would resume it): gc must not pull its artifacts.
    pending = d.backend.create_execution(NAME).execution_id
    deploy(3)
    records = {k: v for k, v in _sizes(d.store).items() if k.split("/")[1] in (pending, finished)}
    assert any(k.endswith("/train/results/payload.pkl") for k in records)

    report = collect_garbage(d.store, NAME, keep=1)
    assert {k: v for k, v in _sizes(d.store).items()
            if k.split("/")[1] in (pending, finished)} == records  # execution folders: never touched
    assert (report.kept_definitions, report.deleted_definitions) == (2, 0)
    assert _folders(d.store, "train") == {_ts(2), _ts(3)}
    # v1 lost its artifacts and left the index, but its finished execution can still be described.
    assert _definitions(d.store) == set(d.digests)
    assert f"{NAME}/.stepflow/definitions/{d.digests[0]}.json" not in read_index(d.store, NAME)
    assert {s["StepName"]: s["StepStatus"] for s in d.backend.list_steps(NAME, finished)} \
        == {"prep": "Succeeded", "train": "Succeeded"}
    assert d.backend.result(NAME, finished, "train") == 6

    d.backend.run(NAME, pending)  # everything it needs is still there
    assert d.backend.result(NAME, pending, "train") == 12
    after_run = collect_garbage(d.store, NAME, keep=1)  # now finished: v2's folder goes
    assert (after_run.kept_definitions, after_run.deleted_definitions) == (1, 0)
    assert _folders(d.store, "train") == {_ts(3)}
    assert _definitions(d.store) == set(d.digests)  # both executions' records remain


def test_keep_counts_the_newest_definitions_and_orphans_go_but_nothing_outside(deploy):
    for version in (1, 2, 3):
        deploy(version)
    d: Deployed = deploy.state
    orphan = f"{NAME}/train/2000-01-01-00-00-00-000/function/payload.pkl"  # a publish that crashed
    neighbour = f"{NAME}x/train/{_ts(1)}/function/payload.pkl"  # another pipeline's prefix
    loose = f"{NAME}/notes/readme.txt"  # not an artifact folder: not gc's to judge
    for key in (orphan, neighbour, loose):
        d.store.put_bytes(key, b"x")

    report = collect_garbage(d.store, NAME, keep=2)
    assert (report.kept_definitions, report.deleted_definitions) == (2, 1)
    assert _folders(d.store, "train") == {_ts(2), _ts(3)}
    assert _definitions(d.store) == set(d.digests[1:])
    assert d.store.head(orphan) is None
    assert d.store.head(neighbour) is not None and d.store.head(loose) is not None


def test_an_unreadable_live_definition_stops_gc_before_it_deletes_anything(deploy):
    for version in (1, 2):
        deploy(version)
    d: Deployed = deploy.state
    d.store.put_bytes(f"{NAME}/.stepflow/definitions/{d.digests[-1]}.json", b"{")
    before = _sizes(d.store)
    with pytest.raises(StorageError, match="cannot tell which artifacts it needs") as caught:
        collect_garbage(d.store, NAME, keep=1)
    assert caught.value.reason == "UnreadableDefinition"
    assert _sizes(d.store) == before


def test_refuses_keep_below_one_and_an_unknown_pipeline(deploy):
    deploy(1)
    d: Deployed = deploy.state
    before = _sizes(d.store)
    with pytest.raises(ValidationError, match="keep=0"):
        collect_garbage(d.store, NAME, keep=0)
    with pytest.raises(StorageError, match="Nothing is stored") as caught:
        collect_garbage(d.store, "no-such-pipeline")
    assert caught.value.reason == "PipelineNotFound"
    assert _sizes(d.store) == before


def test_cli_reports_and_deletes(deploy):
    for version in (1, 2):
        deploy(version)
    d: Deployed = deploy.state
    env = {**os.environ, "COLUMNS": "300"}

    def gc(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([STEPFLOW, "gc", NAME, "--store", d.root, *args], env=env,
                              capture_output=True, text=True, timeout=120)

    dry = gc("--keep", "1", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "would delete 1 definition(s)" in dry.stdout and "nothing was deleted" in dry.stdout
    assert _folders(d.store, "train") == {_ts(1), _ts(2)}

    real = gc("--keep", "1")
    assert real.returncode == 0, real.stderr
    assert "kept 1 definition(s)" in real.stdout and "deleted 1 definition(s)" in real.stdout
    assert _folders(d.store, "train") == {_ts(2)}

    refused = gc("--keep", "0")
    assert refused.returncode == 1
    assert "error (InvalidArgument)" in refused.stderr and "keep=1 or more" in refused.stderr
