"""Where the user API and the compiler meet: data flows one way.

The compiler takes a pipeline plus explicit arguments and returns a graph (with the step
names it decided) and a bundle; it writes nothing into the user's objects and never asks
the pipeline for its session. The workflow package reaches the compiler only through the
session.
"""

from __future__ import annotations

import copy
import json
import subprocess
from pathlib import Path

import pytest
from tests.fixtures import PYTHON, steps_by_name

from stepflow.compiler import compile_pipeline
from stepflow.compiler.graph import build_graph
from stepflow.config import StepflowConfig
from stepflow.session import Session
from stepflow.workflow.function_step import step
from stepflow.workflow.pipeline import Pipeline
from stepflow.workflow.step_outputs import get_step


def _chain() -> tuple[Pipeline, list]:
    @step
    def train(x):
        return x

    first = train(1)
    second = train(first)
    third = train(second["k"])
    return Pipeline(name="seams", steps=[third]), [get_step(r) for r in (first, second, third)]


def _snapshot(obj: object) -> dict:
    """Attributes by identity, containers copied (so adding to a list shows)."""
    return {key: copy.copy(value) if isinstance(value, (list, dict, set)) else value
            for key, value in vars(obj).items()}


def test_compiling_writes_nothing_into_the_pipeline_or_its_steps(tmp_path: Path):
    pipeline, steps = _chain()
    before = [_snapshot(pipeline)] + [_snapshot(s) for s in steps]
    bundle = compile_pipeline(pipeline, s3_root_uri=(tmp_path / "store").as_uri(),
                              out_dir=str(tmp_path / "bundle"), previous_index={},
                              region="us-east-1", remote_function_defaults={})
    assert set(steps_by_name(bundle.definition)) == {"train", "train-2", "train-3"}
    # Not even a default session appears on the pipeline.
    assert [_snapshot(pipeline)] + [_snapshot(s) for s in steps] == before


def test_the_graph_returns_the_names_it_decided():
    pipeline, (first, second, third) = _chain()
    graph = build_graph(pipeline)
    assert [graph.name_of(s) for s in (first, second, third)] == ["train", "train-2", "train-3"]
    assert graph.by_name() == {"train": first, "train-2": second, "train-3": third}
    assert third.name == "train"  # outside a compile: the base name
    with graph.names.active():
        assert third.name == "train-3"
        # Pipeline variables render the names too: here the argument second["k"].
        assert "Steps.train-2." in json.dumps(third.args[0].expr)
    assert third.name == "train"


def test_compile_pipeline_never_asks_the_pipeline_for_its_session(tmp_path: Path):
    class NoSession(Pipeline):
        @property
        def session(self):  # type: ignore[override]
            raise AssertionError("the compiler read pipeline.session")

    @step
    def f():
        return 1

    bundle = compile_pipeline(
        NoSession(name="no-session", steps=[f()]), s3_root_uri=(tmp_path / "s").as_uri(),
        out_dir=str(tmp_path / "b"), region="eu-west-1",
        remote_function_defaults={"InstanceType": "ml.c5.large"})
    arguments = steps_by_name(bundle.definition)["f"]["Arguments"]
    assert arguments["Environment"]["AWS_DEFAULT_REGION"] == "eu-west-1"
    assert arguments["ResourceConfig"]["InstanceType"] == "ml.c5.large"


def test_pipeline_compile_passes_its_sessions_settings(tmp_path: Path):
    config = StepflowConfig(s3_root_uri=(tmp_path / "store").as_uri(),
                            remote_function={"InstanceType": "ml.c5.xlarge"})

    @step
    def f():
        return 1

    pipeline = Pipeline(name="via-session", steps=[f()],
                        session=Session(config=config, region="ap-south-1"))
    bundle = pipeline.compile(str(tmp_path / "bundle"))
    arguments = steps_by_name(bundle.definition)["f"]["Arguments"]
    assert arguments["Environment"]["AWS_DEFAULT_REGION"] == "ap-south-1"
    assert arguments["ResourceConfig"]["InstanceType"] == "ml.c5.xlarge"


def test_the_user_api_imports_without_the_compiler():
    code = ("import sys, stepflow.workflow.pipeline, stepflow.workflow.function_step, "
            "stepflow.workflow.condition_step, stepflow.workflow.fail_step; "
            "print(sorted(m for m in sys.modules if m.startswith('stepflow.compiler')))")
    out = subprocess.run([PYTHON, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_after_a_compile_steps_show_the_names_it_gave_them(tmp_path: Path):
    pipeline, (first, second, third) = _chain()
    assert third.name == "train"  # before any compile: the base name
    with pytest.raises(ValueError):
        with build_graph(pipeline).names.active(settle=True):
            raise ValueError("a compile that fails settles nothing")
    assert third.name == "train"
    compile_pipeline(pipeline, s3_root_uri=(tmp_path / "store").as_uri(), out_dir=str(tmp_path / "bundle"),
                     previous_index={}, region="us-east-1", remote_function_defaults={})
    assert [s.name for s in (first, second, third)] == ["train", "train-2", "train-3"]
    assert all(vars(s).get("_name") is None for s in (first, second, third)), "nothing written into steps"
