"""The local backend end to end: real modules, real step processes, a real store.

Each pipeline is a module file written to a temp dir and loaded the way users' modules
are, so functions travel by value exactly as in production.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from botocore.exceptions import WaiterError
from tests.testenv import wait_for

from stepflow.backends.local import LocalBackend
from stepflow.compiler.loader import load_pipeline
from stepflow.engine import ParameterError
from stepflow.errors import BackendError
from stepflow.remote_function.errors import RemoteFunctionError
from stepflow.session import Session
from stepflow.storage import open_store

HEADER = """
from stepflow.workflow.function_step import step
from stepflow.workflow.step_outputs import get_step
from stepflow.workflow.pipeline import Pipeline
from stepflow.workflow.parameters import ParameterFloat, ParameterInteger, ParameterString
from stepflow.workflow.condition_step import ConditionStep
from stepflow.workflow.conditions import ConditionGreaterThanOrEqualTo
from stepflow.workflow.fail_step import FailStep
from stepflow.workflow.functions import Join
"""


_MODULE_NUMBERS = itertools.count()


@pytest.fixture(params=["file", "s3"])
def root(request, tmp_path, monkeypatch, step_env) -> str:
    if request.param == "file":
        return f"file://{tmp_path / 'store'}"
    s3 = request.getfixturevalue("s3")
    for key, value in s3.env().items():
        monkeypatch.setenv(key, value)
    return s3.root_uri


@pytest.fixture
def deploy(root, tmp_path):
    """deploy(source, **start_kwargs) -> (pipeline, backend): write, load, upsert."""
    def make(source: str):
        path = tmp_path / f"pipe_{next(_MODULE_NUMBERS)}.py"  # module names must not repeat in-process
        path.write_text(HEADER + textwrap.dedent(source))
        pipeline = load_pipeline(str(path))
        backend = LocalBackend(open_store(root), run_dir=tmp_path / "runs")
        pipeline._session = Session(root, backend=backend)
        pipeline.upsert()
        return pipeline, backend

    return make


def failed_wait(execution, timeout: float = 120) -> dict:
    """The description of an execution that ends Failed or Stopped: ``wait()`` raises the
    SDK's WaiterError then, with the description as its last response."""
    with pytest.raises(WaiterError, match="terminal failure state") as info:
        execution.wait(timeout=timeout)
    return info.value.last_response


def steps(execution) -> dict[str, dict]:
    return {s["StepName"]: s for s in execution.list_steps()}


def test_seed_chain_and_explicit_dependency_produce_the_right_values(deploy):
    pipeline, _ = deploy("""
        @step
        def preprocess(raw):
            return [x * 2 for x in raw]

        @step
        def train(data, lr: float):
            return {"sum": sum(data), "lr": lr}

        @step
        def report():
            return "done"

        out = train(preprocess([1, 2, 3]), ParameterFloat("LearningRate", default_value=0.1))
        rep = report()
        get_step(rep).add_depends_on([out])
        pipeline = Pipeline(name="chain", parameters=[ParameterFloat("LearningRate", default_value=0.1)],
                            steps=[rep])
    """)
    execution = pipeline.start(parameters={"LearningRate": 0.5})
    assert execution.wait(timeout=120)["PipelineExecutionStatus"] == "Succeeded"
    assert execution.result("train") == {"sum": 12, "lr": 0.5}
    by = steps(execution)
    assert by["report"]["StartTime"] >= by["train"]["EndTime"]


def test_independent_steps_overlap(deploy):
    pipeline, _ = deploy("""
        @step
        def slow_a():
            import time
            start = time.time(); time.sleep(2); return (start, time.time())

        @step
        def slow_b():
            import time
            start = time.time(); time.sleep(2); return (start, time.time())

        pipeline = Pipeline(name="parallel", steps=[slow_a(), slow_b()])
    """)
    execution = pipeline.start()
    assert execution.wait(timeout=120)["PipelineExecutionStatus"] == "Succeeded"
    (a0, a1), (b0, b1) = execution.result("slow_a"), execution.result("slow_b")
    assert max(a0, b0) < min(a1, b1), "the two independent steps did not run at the same time"


CONDITION = """
    threshold = ParameterFloat("Threshold", default_value=0.5)

    @step(name="evaluate")
    def evaluate():
        return {"accuracy": 0.8}

    @step(name="register")
    def register(metrics):
        return "registered " + str(metrics["accuracy"])

    metrics = evaluate()
    gate = ConditionStep(
        name="gate",
        conditions=[ConditionGreaterThanOrEqualTo(left=metrics["accuracy"], right=threshold)],
        if_steps=[register(metrics)],
        else_steps=[FailStep(name="too-low", error_message=Join(
            on=" ", values=["accuracy", metrics["accuracy"], "below", threshold]))],
    )
    pipeline = Pipeline(name="gated", parameters=[threshold], steps=[gate])
"""


def test_condition_takes_the_if_branch(deploy):
    pipeline, _ = deploy(CONDITION)
    execution = pipeline.start()
    assert execution.wait(timeout=120)["PipelineExecutionStatus"] == "Succeeded"
    by = steps(execution)
    assert by["gate"]["Metadata"]["Condition"]["Outcome"] == "True"
    assert "too-low" not in by  # the branch not taken never started
    assert execution.result("register") == "registered 0.8"


def test_condition_else_branch_reaches_the_fail_step(deploy):
    pipeline, _ = deploy(CONDITION)
    execution = pipeline.start(parameters={"Threshold": 0.9})
    described = failed_wait(execution)
    assert described["PipelineExecutionStatus"] == "Failed"
    assert described["FailureReason"] == "accuracy 0.8 below 0.9"
    by = steps(execution)
    assert "register" not in by  # skipped: SageMaker lists only the steps that started
    assert by["too-low"]["StepStatus"] == "Failed"


def test_infrastructure_failure_is_retried_and_succeeds_on_the_second_attempt(deploy, traversable_dir):
    traversable_dir.chmod(0o777)  # the step's user writes the marker
    marker = traversable_dir / "first-attempt-happened"
    pipeline, _ = deploy(f"""
        @step(max_retry_attempts=2)
        def flaky():
            import os, signal
            if not os.path.exists({str(marker)!r}):
                open({str(marker)!r}, "w").close()
                os.kill(os.getpid(), signal.SIGKILL)
            return "second time lucky"

        pipeline = Pipeline(name="flaky", steps=[flaky()])
    """)
    execution = pipeline.start()
    assert execution.wait(timeout=120)["PipelineExecutionStatus"] == "Succeeded"
    assert steps(execution)["flaky"]["AttemptCount"] == 2
    assert execution.result("flaky") == "second time lucky"


def test_user_error_fails_the_execution_with_the_reason_and_is_not_retried(deploy):
    pipeline, backend = deploy("""
        @step(max_retry_attempts=3)
        def broken():
            raise ValueError("boom: bad input")

        @step
        def after(x):
            return x

        pipeline = Pipeline(name="broken", steps=[after(broken())])
    """)
    execution = pipeline.start()
    described = failed_wait(execution)
    assert described["PipelineExecutionStatus"] == "Failed"
    by = steps(execution)
    # The reason names the user's file and line (project-relative), not <dynamic-code>.
    assert re.fullmatch(r"ValueError: boom: bad input \(at pipe_\d+\.py:\d+ in broken\)", by["broken"]["FailureReason"])
    assert by["broken"]["AttemptCount"] == 1
    assert "after" not in by  # never started
    log = backend.pipeline_store("broken").get_bytes(f"{execution.execution_id}/broken/logs/1.log")
    assert b"ValueError: boom: bad input" in log and b"Traceback" in log
    with pytest.raises(RemoteFunctionError, match="not in Completed status") as info:
        execution.result("broken")
    assert isinstance(info.value.exception, ValueError) and info.value.__cause__ is info.value.exception


def test_stop_during_a_run(deploy, traversable_dir):
    traversable_dir.chmod(0o777)  # the step's user writes the marker
    started = traversable_dir / "started"
    pipeline, _ = deploy(f"""
        @step
        def long():
            import time
            open({str(started)!r}, "w").close()
            time.sleep(120)

        pipeline = Pipeline(name="stoppable", steps=[long()])
    """)
    execution = pipeline.start()
    wait_for(started.exists, timeout=60, message="the step never started")
    execution.stop()
    described = failed_wait(execution, timeout=60)
    assert described["PipelineExecutionStatus"] == "Stopped"
    assert steps(execution)["long"]["StepStatus"] == "Stopped"


def _orchestrator_pids(execution_id: str) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"stepflow.backends.local" in cmd and execution_id.encode() in cmd:
            pids.append(int(entry))
    return pids


def test_killed_orchestrator_resumes_and_every_step_runs_once(deploy, traversable_dir):
    ledger = traversable_dir / "ledger"
    ledger.mkdir(mode=0o777)
    ledger.chmod(0o777)  # the step's user writes into it
    pipeline, backend = deploy(f"""
        def _log(name):
            import os, time
            with open(os.path.join({str(ledger)!r}, name + "." + str(os.getpid())), "w"):
                pass
            time.sleep(1.5)
            return name

        @step
        def a():
            return _log("a")

        @step
        def b(x):
            return _log("b")

        @step
        def c(x):
            return _log("c")

        pipeline = Pipeline(name="resumable", steps=[c(b(a()))])
    """)
    execution = pipeline.start()
    wait_for(lambda: any(p.name.startswith("b.") for p in ledger.iterdir()), timeout=60,
             message="step b never started")
    pids = _orchestrator_pids(execution.execution_id)
    assert len(pids) == 1
    os.kill(pids[0], signal.SIGKILL)
    wait_for(lambda: not backend.orchestrator_alive("resumable", execution.execution_id), timeout=10,
             message="the orchestrator did not die")
    assert execution.wait(timeout=120)["PipelineExecutionStatus"] == "Succeeded"  # resumes it
    names = sorted(p.name.split(".")[0] for p in ledger.iterdir())
    assert names == ["a", "b", "c"], f"some step ran more than once: {names}"
    assert all(s["AttemptCount"] == 1 for s in execution.list_steps())


def test_wrong_parameter_name_or_type_at_start_is_refused(deploy):
    pipeline, _ = deploy("""
        n = ParameterInteger("Count", default_value=1)

        @step
        def one(k):
            return k

        pipeline = Pipeline(name="params", parameters=[n], steps=[one(n)])
    """)
    with pytest.raises(ParameterError, match="Cuont") as err:
        pipeline.start(parameters={"Cuont": 3})
    assert "Count" in str(err.value)
    with pytest.raises(ParameterError, match="Count"):
        pipeline.start(parameters={"Count": "three"})
    assert pipeline.list_executions()["PipelineExecutionSummaries"] == []


def test_executions_are_readable_from_another_process(deploy, root, tmp_path):
    pipeline, _ = deploy("""
        @step
        def hello():
            return {"greeting": "hi"}

        pipeline = Pipeline(name="shared", steps=[hello()])
    """)
    execution = pipeline.start()
    execution.wait(timeout=120)
    script = textwrap.dedent(f"""
        import json
        from stepflow.backends.local import LocalBackend
        from stepflow.storage import open_store
        b = LocalBackend(open_store({root!r}), run_dir=__import__("pathlib").Path({str(tmp_path / 'runs')!r}))
        ids = [s["PipelineExecutionId"] for s in b.list_executions("shared")["PipelineExecutionSummaries"]]
        print(json.dumps({{"ids": ids, "status": b.describe_execution("shared", ids[0])["PipelineExecutionStatus"],
                          "result": b.result("shared", ids[0], "hello")}}))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                         timeout=60)
    assert json.loads(out.stdout) == {"ids": [execution.execution_id], "status": "Succeeded",
                                      "result": {"greeting": "hi"}}


def test_container_steps_are_refused_at_publish_naming_the_backends_that_run_them(deploy, tmp_path):
    (tmp_path / "prep.py").write_text("print('prep')\n")
    with pytest.raises(BackendError) as info:
        deploy("""
            from stepflow.workflow.processing import ProcessingOutput, ScriptProcessor
            from stepflow.workflow.steps import ProcessingStep

            processor = ScriptProcessor(image_uri="python:3.11-slim", command=["python3"],
                                        role="arn:aws:iam::1:role/R", instance_type="ml.m5.large", instance_count=1)
            prep = ProcessingStep(name="prep", step_args=processor.run(
                outputs=[ProcessingOutput(output_name="train", source="/opt/ml/processing/train")], code="prep.py"))

            @step
            def train(path):
                return path

            uri = prep.properties.ProcessingOutputConfig.Outputs["train"].S3Output.S3Uri
            pipeline = Pipeline(name="containers", steps=[train(uri)])
        """)
    assert info.value.reason == "UnsupportedStepType" and info.value.kind == "User"
    assert ("step 'prep' (Processing) runs its own container image, which the local backend cannot "
            "run; backends that can: kubernetes, sagemaker") in info.value.message


def test_the_backends_limit_caps_every_execution_and_a_pipeline_can_only_lower_it(root, tmp_path):
    """``LocalBackend(parallelism=N)`` is an installation's limit (the kubernetes backend's
    ``steps.maxParallelJobs``): a pipeline asking for more runs N at a time, one asking for
    fewer keeps its own."""
    from stepflow.workflow.parallelism_config import ParallelismConfiguration

    path = tmp_path / f"pipe_{next(_MODULE_NUMBERS)}.py"
    path.write_text(HEADER + textwrap.dedent("""
        @step
        def one():
            return 1

        pipeline = Pipeline(name="capped", steps=[one()])
    """))
    pipeline = load_pipeline(str(path))
    backend = LocalBackend(open_store(root), run_dir=tmp_path / "runs", parallelism=3)
    pipeline._session = Session(root, backend=backend)

    pipeline.upsert()
    assert backend.create_execution("capped").parallelism == 3
    assert backend.create_execution("capped", parallelism=1).parallelism == 1
    pipeline.upsert(parallelism_config=ParallelismConfiguration(max_parallel_execution_steps=50))
    assert backend.create_execution("capped").parallelism == 3
    pipeline.upsert(parallelism_config=ParallelismConfiguration(max_parallel_execution_steps=2))
    assert backend.create_execution("capped").parallelism == 2
    assert backend.create_execution("capped", parallelism=10).parallelism == 3
