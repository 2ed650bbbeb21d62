"""Local ``ProcessingInput`` sources are uploaded at publish (issue 10, bug 6).

The SDK uploads a local source when it builds the definition and points ``S3Uri`` at the
upload; here the files ship in the step's ``<ts>`` folder under ``input/<input name>/``, so
an unchanged input is published once and costs zero bytes afterwards.
"""

from __future__ import annotations

import pytest
from tests.fixtures import steps_by_name

from stepflow import layout
from stepflow.compiler.publish import publish, read_index
from stepflow.errors import ValidationError
from stepflow.workflow.callsite import set_project_root
from stepflow.workflow.pipeline import Pipeline
from stepflow.workflow.processing import ProcessingInput, ScriptProcessor
from stepflow.workflow.steps import ProcessingStep


@pytest.fixture
def project(tmp_path):
    root = tmp_path / "project"
    (root / "data" / "raw" / "2026").mkdir(parents=True)
    (root / "data" / "raw" / "a.csv").write_text("a\n1\n")
    (root / "data" / "raw" / "2026" / "b.csv").write_text("b\n2\n")
    (root / "data" / "labels.csv").write_text("label\nx\n")
    (tmp_path / "outside.json").write_text("{}")
    set_project_root(root)
    yield root
    set_project_root(None)


def _pipeline(root) -> Pipeline:
    processor = ScriptProcessor(image_uri="python:3.11-slim", command=["python3"])
    step = ProcessingStep("Prepare", step_args=processor.run(inputs=[
        ProcessingInput(source="data/raw", destination="/opt/ml/processing/raw", input_name="raw"),
        ProcessingInput(source="data/labels.csv", destination="/opt/ml/processing/labels"),
        ProcessingInput(source=f"file://{root.parent / 'outside.json'}",
                        destination="/opt/ml/processing/extra", input_name="extra"),
        ProcessingInput(source="s3://elsewhere/data/", destination="/opt/ml/processing/remote",
                        input_name="remote"),
    ]))
    return Pipeline(name="localinputs", steps=[step])


def _inputs(bundle) -> dict[str, str]:
    proc = steps_by_name(bundle.definition)["Prepare"]
    return {i["InputName"]: i["S3Input"]["S3Uri"] for i in proc["Arguments"]["ProcessingInputs"]}


def test_definition_points_at_the_uploaded_inputs(compile_, session, project):
    bundle = compile_(_pipeline(project))
    uris = _inputs(bundle)
    folder = next(f.key for f in bundle.files if "/input/raw/" in f.key).split("/input/")[0]
    base = f"{session.s3_root_uri}/{folder}"
    assert uris == {
        "raw": f"{base}/input/raw/",                      # a folder: its prefix
        "input-2": f"{base}/input/input-2/labels.csv",     # a file: its object
        "extra": f"{base}/input/extra/outside.json",
        "remote": "s3://elsewhere/data/",                  # already in S3: untouched
    }
    shipped = {f.key[len(folder) + 1:]: bundle.path_of(f.key).read_bytes()
               for f in bundle.files if f.key.startswith(folder + "/input/")}
    assert shipped == {"input/raw/a.csv": b"a\n1\n", "input/raw/2026/b.csv": b"b\n2\n",
                       "input/input-2/labels.csv": b"label\nx\n", "input/extra/outside.json": b"{}"}
    assert layout.input_prefix("raw") == "input/raw"


def test_unchanged_inputs_publish_zero_bytes_and_a_change_a_new_folder(compile_, store, project):
    first = publish(compile_(_pipeline(project), s3_root_uri=store.root_uri, previous_index={}), store)
    assert first.uploaded_files == 4
    # The uploaded objects are where the definition says.
    bundle = compile_(_pipeline(project), s3_root_uri=store.root_uri,
                      previous_index=read_index(store, "localinputs"))
    labels = _inputs(bundle)["input-2"]
    assert store.get_bytes(labels[len(store.root_uri) + 1:]) == b"label\nx\n"

    again = publish(bundle, store)
    assert (again.uploaded_files, again.uploaded_bytes) == (0, 0)

    (project / "data" / "raw" / "a.csv").write_text("a\n1\n3\n")
    changed = compile_(_pipeline(project), s3_root_uri=store.root_uri,
                       previous_index=read_index(store, "localinputs"))
    assert _inputs(changed)["raw"] != _inputs(bundle)["raw"]  # new content, new <ts> folder
    report = publish(changed, store)
    assert report.uploaded_files == 4 and report.uploaded_bytes > 0


@pytest.mark.parametrize("source,problem", [
    ("data/missing.csv", "is neither a file nor a folder"),
    ("data/empty", "is an empty folder"),
])
def test_a_bad_local_input_names_the_step_and_input(compile_, project, source, problem):
    (project / "data" / "empty").mkdir()
    processor = ScriptProcessor(image_uri="python:3.11-slim", command=["python3"])
    step = ProcessingStep("Prepare", step_args=processor.run(inputs=[
        ProcessingInput(source=source, destination="/opt/ml/processing/x", input_name="x")]))
    with pytest.raises(ValidationError, match=f"Step 'Prepare': input 'x' source .*{problem}"):
        compile_(Pipeline(name="bad", steps=[step]))
