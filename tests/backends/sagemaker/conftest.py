"""Fixtures of the sagemaker backend's tests: pipelines as module files, a call log per
client, an isolated configuration."""

from __future__ import annotations

import itertools
import textwrap
from pathlib import Path
from typing import Any

import pytest

from stepflow.compiler.loader import load_pipeline

ROLE = "arn:aws:iam::123456789012:role/stepflow-pipelines"


@pytest.fixture
def role_arn() -> str:
    return ROLE

HEADER = """
from stepflow.workflow.function_step import step
from stepflow.workflow.pipeline import Pipeline
from stepflow.workflow.parameters import ParameterInteger, ParameterString
"""

#: Two chained @step functions and two typed parameters; ``{factor}`` changes the definition.
PIPELINE = """
n = ParameterInteger(name="n", default_value=5)
label = ParameterString(name="label", default_value="base")


@step(name="make")
def make(n: int) -> list:
    return list(range(n))


@step(name="total")
def total(values: list, label: str) -> str:
    return f"{{label}}={{sum(values) * {factor}}}"


pipeline = Pipeline(name="{name}", parameters=[n, label], steps=[total(make(n), label)])
"""

_NUMBERS = itertools.count()


class CallLog:
    """The operation names a boto3 client sent, from botocore's own ``before-call`` event."""

    def __init__(self, client: Any) -> None:
        self.names: list[str] = []
        self.params: list[tuple[str, dict[str, Any]]] = []
        client.meta.events.register("before-call.sagemaker", self._record)

    def _record(self, model: Any, params: Any, **_: Any) -> None:
        self.names.append(model.name)
        self.params.append((model.name, params.get("body") if isinstance(params, dict) else params))

    def clear(self) -> None:
        self.names.clear()
        self.params.clear()


@pytest.fixture
def write_pipeline(tmp_path: Path):
    """write_pipeline(factor=1, name="churn") -> Pipeline loaded from a fresh module file."""
    def make(factor: int = 1, name: str = "churn") -> Any:
        path = tmp_path / f"smpipe_{next(_NUMBERS)}.py"  # module names must not repeat in-process
        path.write_text(HEADER + textwrap.dedent(PIPELINE.format(factor=factor, name=name)))
        return load_pipeline(str(path))

    return make


@pytest.fixture
def config_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """config_env(text) -> the config file in force (no user or admin file), store on file://,
    the @steps' role set."""
    monkeypatch.setenv("STEPFLOW_ADMIN_CONFIG", "")
    monkeypatch.setenv("STEPFLOW_USER_CONFIG", "")
    monkeypatch.setenv("STEPFLOW_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("STEPFLOW_S3_ROOT_URI", (tmp_path / "store").as_uri())
    for name in ("STEPFLOW_BACKEND", "STEPFLOW_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("STEPFLOW_ROLE_ARN", ROLE)  # the @steps' training-job role

    def write(text: str) -> Path:
        path = tmp_path / "config.yaml"
        path.write_text(textwrap.dedent(text))
        monkeypatch.setenv("STEPFLOW_CONFIG", str(path))
        return path

    return write


@pytest.fixture
def call_log():
    """call_log(client) -> CallLog: what the client sends from now on."""
    return CallLog
