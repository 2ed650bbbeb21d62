"""A compiled @step's Training step run exactly as SageMaker runs it, as a plain process.

What SageMaker does for a training job, done here with a temporary root standing for the
container's ``/``: each InputDataConfig channel is downloaded to
``/opt/ml/input/data/<channel>``; the definition's ContainerEntrypoint runs with its
ContainerArguments (every expression resolved, as the service does) and its Environment;
the job's interpreter has Python, pip and libraries but **no stepflow** and no package
index, so the job driver must install the runtime wheel published next to it, after its
integrity check. The result must land where the step's OutputDataConfig says.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest

from stepflow.compiler.loader import load_pipeline
from stepflow.config import StepflowConfig
from stepflow.engine import Plan, execution_context, new_execution, resolve, resolve_container_arguments, to_text
from stepflow.serialization import deserialize
from stepflow.session import Session
from stepflow.storage import open_store

KEY = bytes.fromhex("5f" * 32)
ML = "/opt/ml"

MODULE = '''
from stepflow.workflow.function_step import step
from stepflow.workflow.parameters import ParameterInteger
from stepflow.workflow.pipeline import Pipeline

n = ParameterInteger(name="n", default_value=5)


@step(name="make")
def make(n: int) -> dict:
    import stepflow
    return {"values": list(range(n)), "stepflow": stepflow.__file__}


pipeline = Pipeline(name="contract", parameters=[n], steps=[make(n)])
'''


@pytest.fixture
def job_python(tmp_path: Path) -> tuple[str, str]:
    """A training image's interpreter: a venv without stepflow, whose libraries (and pip)
    come from this environment's site-packages minus stepflow itself."""
    image = tmp_path / "image"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(image)], check=True, timeout=120)
    libs = tmp_path / "image-libs"
    libs.mkdir()
    site = Path(sysconfig.get_paths()["purelib"])
    for entry in site.iterdir():
        if entry.name.startswith(("stepflow", "__editable__", "_stepflow")):
            continue
        (libs / entry.name).symlink_to(entry)
    return str(image / "bin" / "python"), str(libs)


def _download_channels(step: dict, root: Path) -> None:
    """SageMaker's File input mode: each channel's S3 prefix under /opt/ml/input/data/<channel>."""
    for channel in step["Arguments"]["InputDataConfig"]:
        uri = channel["DataSource"]["S3DataSource"]["S3Uri"].rstrip("/")
        store = open_store(uri)
        target = root / "input" / "data" / channel["ChannelName"]
        for info in store.list(""):
            path = target / info.key
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(store.get_bytes(info.key))


def _in_root(value: str, root: Path) -> str:
    return str(root) + value[len(ML):] if value.startswith(ML) else value


def _run_training_step(tmp_path: Path, job_python: tuple[str, str], *, tamper: bool = False
                       ) -> tuple[subprocess.CompletedProcess, str, Plan, dict]:
    store_root = (tmp_path / "store").as_uri()
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "contract_flow.py").write_text(textwrap.dedent(MODULE))
    pipeline = load_pipeline(str(tmp_path / "src" / "contract_flow.py"))
    pipeline._session = Session(config=StepflowConfig(s3_root_uri=store_root, integrity_key=KEY))
    with pipeline.session.published(pipeline) as bundle:
        definition = json.loads(bundle.definition_bytes)
    if tamper:
        store = open_store(store_root)
        key = "contract/sagemaker_remote_function_bootstrap/stepflow_runtime/payload.pkl"
        store.put_bytes(key, store.get_bytes(key) + b"\0")

    plan = Plan.from_definition(definition)
    now = datetime.now(UTC)
    state = new_execution(plan, execution_id="exec-1", pipeline_name="contract", parameters={"n": 4}, now=now)
    context = execution_context(plan, state, None, now)
    step = plan.step("make").definition
    ml = tmp_path / "container" / "opt" / "ml"
    _download_channels(dict(step), ml)
    spec = step["Arguments"]["AlgorithmSpecification"]
    command = [_in_root(part, ml) for part in spec["ContainerEntrypoint"]]
    arguments = resolve_container_arguments(plan, "make", context)
    python, libs = job_python
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), **step["Arguments"].get("Environment", {}),
           "STEPFLOW_PYTHON": python, "PYTHONPATH": libs, "PIP_NO_INDEX": "1",
           "STEPFLOW_INTEGRITY_KEY": KEY.hex(), "STEPFLOW_S3_ROOT_URI": store_root,
           "SAGEMAKER_MANAGED_WARMPOOL_CACHE_DIRECTORY": str(tmp_path / "warm"),
           "STEPFLOW_USER_CONFIG": "", "STEPFLOW_ADMIN_CONFIG": ""}
    done = subprocess.run([*command, *arguments], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    output = to_text(resolve(step["Arguments"]["OutputDataConfig"]["S3OutputPath"], context))
    return done, output, plan, env


def test_training_step_runs_as_sagemaker_runs_it(tmp_path, job_python) -> None:
    done, output, _, env = _run_training_step(tmp_path, job_python)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "installing /" in done.stderr and "stepflow-" in done.stderr and ".whl" in done.stderr, done.stderr
    assert output == f"{env['STEPFLOW_S3_ROOT_URI']}/contract/exec-1/make/results"
    results = open_store(output)
    value = deserialize(results.get_bytes("payload.pkl"), results.get_bytes("metadata.json"), key=KEY)
    assert value["values"] == [0, 1, 2, 3]
    image = Path(job_python[0]).parents[1]
    assert Path(value["stepflow"]).is_relative_to(image), value  # the wheel's stepflow ran, not ours


def test_a_tampered_runtime_wheel_is_refused_before_pip_sees_it(tmp_path, job_python) -> None:
    done, output, _, _ = _run_training_step(tmp_path, job_python, tamper=True)
    assert done.returncode != 0
    assert "integrity check failed for the published stepflow wheel" in done.stderr, done.stderr
    assert "installing" not in done.stderr
    assert not list(open_store(output).list(""))
