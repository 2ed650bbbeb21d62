"""Signing a sandbox-built bundle on the trusted side, and the workspace's <ts> folders."""

from __future__ import annotations

import itertools
import textwrap
from pathlib import Path

import pytest

from stepflow.compiler import compile_pipeline
from stepflow.compiler.loader import load_pipeline
from stepflow.compiler.publish import publish, read_index
from stepflow.config import StepflowConfig
from stepflow.errors import IntegrityError
from stepflow.serialization import deserialize
from stepflow.session import Session
from stepflow.storage import open_store

KEY = bytes.fromhex("11" * 32)
_N = itertools.count()


def _project(tmp_path: Path, source: str, extra: dict[str, str] | None = None) -> Path:
    project = tmp_path / f"project{next(_N)}"
    project.mkdir()
    (project / f"pipe_sign_{next(_N)}.py").write_text(textwrap.dedent(source))
    for name, text in (extra or {}).items():
        (project / name).write_text(text)
    return project


def _load(project: Path, root: str):
    module = next(project.glob("pipe_sign_*.py"))
    pipeline = load_pipeline(module.name, workdir=project)
    pipeline._session = Session(config=StepflowConfig(s3_root_uri=root))
    return pipeline


SOURCE = """
    from stepflow.workflow.function_step import step
    from stepflow.workflow.pipeline import Pipeline

    @step
    def double(x):
        return 2 * x

    pipeline = Pipeline(name="signed", steps=[double(21)])
"""


def test_signed_bundle_verifies_only_with_the_key_and_keeps_its_ts(tmp_path):
    root = (tmp_path / "store").as_uri()
    store = open_store(root)
    pipeline = _load(_project(tmp_path, SOURCE), root)
    first = compile_pipeline(pipeline, s3_root_uri=root, out_dir=str(tmp_path / "b1"))
    assert first.sign(KEY) == 3  # function, arguments and the runtime wheel
    payload = first.path_of(next(f.key for f in first.files if f.key.endswith("arguments/payload.pkl")))
    metadata = payload.with_name("metadata.json")
    assert deserialize(payload.read_bytes(), metadata.read_bytes(), key=KEY) == ((21,), {})
    with pytest.raises(IntegrityError):
        deserialize(payload.read_bytes(), metadata.read_bytes(), key=None)
    assert publish(first, store).uploaded_files == len(first.files)

    # A later sandboxed build (unkeyed) of the same code keeps every <ts> folder...
    second = compile_pipeline(pipeline, s3_root_uri=root, out_dir=str(tmp_path / "b2"),
                              previous_index=read_index(store, "signed"))
    assert second.definition_bytes == first.definition_bytes
    # ...and once signed it is byte-identical to what is published: nothing to upload.
    second.sign(KEY)
    report = publish(second, store)
    assert (report.uploaded_files, report.uploaded_bytes) == (0, 0)


def test_signing_refuses_a_payload_that_does_not_match_its_recorded_digest(tmp_path):
    root = (tmp_path / "store").as_uri()
    bundle = compile_pipeline(_load(_project(tmp_path, SOURCE), root), s3_root_uri=root,
                              out_dir=str(tmp_path / "b"))
    victim = next(f.key for f in bundle.files if f.key.endswith("function/payload.pkl"))
    bundle.path_of(victim).write_bytes(b"swapped after the build")
    with pytest.raises(IntegrityError):
        bundle.sign(KEY)


WORKSPACE = """
    from stepflow.workflow.function_step import step
    from stepflow.workflow.pipeline import Pipeline

    @step(include_local_workdir=True)
    def read_helper():
        import helper
        return helper.VALUE

    @step
    def plain():
        return 1

    pipeline = Pipeline(name="ws", steps=[read_helper(), plain()])
"""


def _channels(bundle) -> dict[str, dict[str, str]]:
    out = {}
    for step in bundle.definition["Steps"]:
        args = step["Arguments"]
        ts = args["AlgorithmSpecification"]["ContainerArguments"]
        ts = ts[ts.index("--func_step_s3_dir") + 1]
        out[step["Name"]] = {"ts": ts, **{c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"]
                                          for c in args["InputDataConfig"]}}
    return out


def test_workspace_is_under_the_steps_own_ts_and_a_new_workspace_means_a_new_ts(tmp_path, monkeypatch):
    root = (tmp_path / "store").as_uri()
    store = open_store(root)
    project = _project(tmp_path, WORKSPACE, {"helper.py": "VALUE = 1\n"})
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    first = compile_pipeline(_load(project, root), s3_root_uri=root, out_dir=str(tmp_path / "w1"))
    ch = _channels(first)
    ts = ch["read_helper"]["ts"]
    assert ch["read_helper"][ts] == f"{root}/ws/sm_rf_user_ws/{ts}/workspace.zip"
    assert f"ws/sm_rf_user_ws/{ts}/workspace.zip" in {f.key for f in first.files}
    assert set(ch["plain"]) == {"ts", "sagemaker_remote_function_bootstrap"}  # no workspace channel
    publish(first, store)

    (project / "helper.py").write_text("VALUE = 2\n")
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1800000000")
    second = compile_pipeline(_load(project, root), s3_root_uri=root, out_dir=str(tmp_path / "w2"),
                              previous_index=read_index(store, "ws"))
    ch2 = _channels(second)
    assert ch2["read_helper"]["ts"] != ts, "a changed workspace must not reuse the published folder"
    assert ch2["plain"]["ts"] == ch["plain"]["ts"], "an unrelated step keeps its folder"


def test_changed_content_never_lands_in_a_published_folder_even_at_the_same_commit_second(tmp_path, monkeypatch):
    """Two commits in one second share SOURCE_DATE_EPOCH; the second must still get new folders."""
    root = (tmp_path / "store").as_uri()
    store = open_store(root)
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    first = compile_pipeline(_load(_project(tmp_path, SOURCE), root), s3_root_uri=root, out_dir=str(tmp_path / "c1"))
    publish(first, store)
    changed = SOURCE.replace("return 2 * x", "return 3 * x")
    second = compile_pipeline(_load(_project(tmp_path, changed), root), s3_root_uri=root,
                              out_dir=str(tmp_path / "c2"), previous_index=read_index(store, "signed"))
    assert second.digest != first.digest
    published = {f.key for f in first.files}
    rewritten = [f.key for f in second.files if f.key in published and "/double/" in f.key
                 and f.sha256 != next(g.sha256 for g in first.files if g.key == f.key)]
    assert rewritten == []
