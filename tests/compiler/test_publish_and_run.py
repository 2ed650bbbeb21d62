"""Pipeline.definition()/upsert() publish to a real store; published steps run in the runtime."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from tests.fixtures import PIPELINES, PYTHON, container_args, steps_by_name

from stepflow.backends.base import Backend
from stepflow.compiler.loader import load_pipeline
from stepflow.compiler.publish import publish
from stepflow.config import StepflowConfig
from stepflow.errors import BackendError
from stepflow.serialization import deserialize
from stepflow.session import Session
from stepflow.storage import open_store
from stepflow.workflow.function_step import step
from stepflow.workflow.pipeline import Pipeline


def _keys(store, prefix: str) -> set[str]:
    return {info.key for info in store.list(prefix)}


def _republish_is_free(session: Session) -> None:
    @step
    def prep(n):
        return list(range(n))

    @step
    def total(values):
        return sum(values)

    pipeline = Pipeline(name="republish", steps=[total(prep(5))], session=session)
    first = pipeline.definition()
    keys = _keys(session.store, "republish/")
    assert any(k.endswith("prep/" + k.split("/")[2] + "/function/payload.pkl") for k in keys)
    second = pipeline.definition()
    assert second == first  # same <ts> folders: the published content is unchanged
    assert _keys(session.store, "republish/") == keys
    report = publish(pipeline.compile(), session.store)
    assert (report.uploaded_files, report.uploaded_bytes) == (0, 0)
    assert report.skipped_files > 0


def test_republishing_unchanged_content_uploads_nothing_file(session):
    _republish_is_free(session)


@pytest.mark.s3
def test_republishing_unchanged_content_uploads_nothing_s3(s3, monkeypatch):
    for k, v in s3.env().items():
        monkeypatch.setenv(k, v)
    session = Session(config=StepflowConfig(s3_root_uri=s3.root_uri,
                                            s3_endpoint_url=s3.endpoint_url))
    _republish_is_free(session)


class RecordingBackend(Backend):
    """A real in-memory backend: records upserted definitions."""

    name = "recording"

    def __init__(self) -> None:
        self.definitions: dict[str, list[bytes]] = {}

    def upsert(self, bundle, store, *, role_arn, description, tags) -> dict:
        self.definitions.setdefault(bundle.pipeline_name, []).append(bundle.definition_bytes)
        return {"PipelineArn": f"arn:recording:{bundle.pipeline_name}"}

    def describe(self, pipeline_name: str) -> dict:
        if pipeline_name not in self.definitions:
            raise BackendError(f"no pipeline {pipeline_name}", reason="PipelineNotFound")
        return {"PipelineName": pipeline_name,
                "PipelineDefinition": self.definitions[pipeline_name][-1].decode()}

    def delete(self, pipeline_name: str) -> dict:
        self.definitions.pop(pipeline_name)
        return {}

    def _unsupported(self, *args: Any, **kwargs: Any) -> Any:
        raise BackendError("not supported by the recording backend")

    start = describe_execution = list_steps = stop = wait = list_executions = result = _unsupported
    definition = create_execution = run = execution_state = result_uri = _unsupported


def test_upsert_compiles_and_publishes_once(store_root, monkeypatch):
    backend = RecordingBackend()
    session = Session(config=StepflowConfig(s3_root_uri=store_root), backend=backend)

    def build(n: int) -> Pipeline:
        @step
        def only(x):
            return x

        return Pipeline(name="upserted", steps=[only(n)], session=session)

    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    assert build(1).create(role_arn="arn:aws:iam::1:role/R") == {
        "PipelineArn": "arn:recording:upserted"}
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000100")
    with pytest.raises(BackendError, match="already exists"):
        build(2).create()
    build(2).upsert()
    folders = {k.split("/")[2] for k in _keys(session.store, "upserted/only/")}
    assert folders == {"2023-11-14-22-13-20-000", "2023-11-14-22-15-00-000"}
    definitions = _keys(session.store, "upserted/.stepflow/definitions/")
    assert len(definitions) == 2 and len(backend.definitions["upserted"]) == 2
    assert build(2).describe()["PipelineName"] == "upserted"


def _resolve(value: Any, refs: dict[str, str]) -> str:
    """What the pipeline service does to a ContainerArguments entry before the job starts."""
    if isinstance(value, str):
        return value
    if "Get" in value:
        return refs[value["Get"]]
    join = value["Std:Join"]
    return join["On"].join(_resolve(v, refs) for v in join["Values"])


def test_published_steps_run_in_the_step_runtime(session, tmp_path, step_env):
    pipeline = load_pipeline("seed_chain.py:pipeline", workdir=PIPELINES)
    pipeline._session = session
    definition = json.loads(pipeline.definition())
    base = f"{session.s3_root_uri}/seed-data-dependency"
    refs = {"Execution.PipelineExecutionId": "exec-1",
            "Steps.preprocess.OutputDataConfig.S3OutputPath": f"{base}/exec-1/preprocess/results"}
    env = {k: v for k, v in os.environ.items() if not k.startswith("STEPFLOW_")}
    config = tmp_path / "config.yaml"
    config.write_text("# nothing configured\n")
    env |= {"STEPFLOW_CONFIG": str(config), "STEPFLOW_CACHE_DIR": str(step_env),
            "STEPFLOW_STEP_PYTHON": os.environ["STEPFLOW_STEP_PYTHON"]}  # step_env's
    for name in ("preprocess", "train"):
        args = [_resolve(a, refs) for a in container_args(steps_by_name(definition)[name])]
        run = subprocess.run([PYTHON, "-m", "stepflow.runtime", *args], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, run.stdout + run.stderr
    store = open_store(session.s3_root_uri)
    prefix = "seed-data-dependency/exec-1/train/results"
    value = deserialize(store.get_bytes(f"{prefix}/payload.pkl"),
                        store.get_bytes(f"{prefix}/metadata.json"))
    assert value == len("S3://MY-BUCKET/RAW.CSV")


def _driver(tmp_path: Path, installed: str, *args: str,
            extra_env: dict[str, str] | None = None) -> list[str]:
    log = tmp_path / "calls.log"
    fake = tmp_path / "fake-python"
    fake.write_text(f'#!/bin/bash\necho "$*" >> {log}\nif [ "$1" = "-c" ]; then echo "{installed}"; fi\n')
    fake.chmod(0o755)
    from stepflow.compiler.compile import job_driver

    driver = tmp_path / "job_driver.sh"
    driver.write_bytes(job_driver())
    env = dict(os.environ, STEPFLOW_PYTHON=str(fake),
               SAGEMAKER_MANAGED_WARMPOOL_CACHE_DIRECTORY=str(tmp_path / "cache"),
               **(extra_env or {}))
    proc = subprocess.run(["/bin/bash", str(driver), *args], env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return log.read_text().splitlines()


def test_job_driver_runs_the_runtime_when_stepflow_matches(tmp_path):
    calls = _driver(tmp_path, "0.1.0", "--s3_base_uri", "s3://b/p",
                    "--client_stepflow_version", "0.1.0")
    assert calls[-1] == "-m stepflow.runtime --s3_base_uri s3://b/p --client_stepflow_version 0.1.0"
    assert not any("pip install" in c for c in calls)


def test_job_driver_installs_the_client_version_when_missing_or_different(tmp_path):
    calls = _driver(tmp_path, "", "--client_stepflow_version", "0.1.0")
    assert "-m pip install --quiet --disable-pip-version-check stepflow==0.1.0" in calls
    assert calls[-1].startswith("-m stepflow.runtime")
    calls = _driver(tmp_path, "0.0.9", "--client_stepflow_version", "0.1.0",
                    extra_env={"STEPFLOW_PIP_SPEC": "/wheels/stepflow-0.1.0.whl"})
    assert "-m pip install --quiet --disable-pip-version-check /wheels/stepflow-0.1.0.whl" in calls
