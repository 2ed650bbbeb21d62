"""Programs of the kinds SageMaker notebooks contain, run unchanged but for their imports
on the local backend (issue 10): non-JSON values between steps, pipeline variables in
decorator keywords, call-time capture, failures surfaced the SDK's way.

Each pipeline is a module file loaded the way users' modules are, so functions and the
classes they return travel by value exactly as in production. The store is file://
(the S3 store is exercised by test_local_backend.py).
"""

from __future__ import annotations

import itertools
import json
import textwrap
from pathlib import Path

import pytest
from botocore.exceptions import WaiterError

from stepflow.backends.local import LocalBackend
from stepflow.compiler.loader import load_pipeline
from stepflow.errors import SerializationError
from stepflow.session import Session
from stepflow.storage import open_store

HEADER = """
from stepflow.workflow.function_step import step
from stepflow.workflow.pipeline import Pipeline
from stepflow.workflow.parameters import ParameterInteger, ParameterString
from stepflow.workflow.execution_variables import ExecutionVariables
from stepflow.workflow.condition_step import ConditionStep
from stepflow.workflow.conditions import ConditionGreaterThanOrEqualTo
from stepflow.workflow.fail_step import FailStep


class Frame:
    '''Stands in for a pandas DataFrame: picklable, not JSON-serializable.'''

    def __init__(self, rows):
        self.rows = rows

    def mean(self):
        return sum(self.rows) / len(self.rows)
"""

_MODULE_NUMBERS = itertools.count()


@pytest.fixture
def shared(step_env) -> Path:
    """A folder the steps' user code (uid 65534 under root, with a private /tmp) may write."""
    folder = step_env.parent / "shared"
    folder.mkdir(mode=0o777)
    folder.chmod(0o777)
    return folder


@pytest.fixture
def deploy(tmp_path, step_env):
    """deploy(source) -> pipeline: write the module, load it, upsert it on a local backend
    (steps' user code as uid 65534 when the suite runs as root: ``step_env``)."""
    root = f"file://{tmp_path / 'store'}"

    def make(source: str):
        path = tmp_path / f"smprog_{next(_MODULE_NUMBERS)}.py"
        path.write_text(HEADER + textwrap.dedent(source))
        pipeline = load_pipeline(str(path))
        backend = LocalBackend(open_store(root), run_dir=tmp_path / "runs")
        pipeline._session = Session(root, backend=backend)
        pipeline.upsert()
        return pipeline

    return make


def by_name(execution) -> dict[str, dict]:
    return {s["StepName"]: s for s in execution.list_steps()}


# -- bug 1: values between steps need not be JSON -----------------------------------------


def test_a_dataframe_like_value_passes_between_steps(deploy):
    pipeline = deploy("""
        @step
        def load():
            return Frame([1.0, 2.0, 6.0])

        @step
        def train(frame, scale):
            return {"mean": frame.mean() * scale}

        pipeline = Pipeline(name="frames", steps=[train(load(), 2)])
    """)
    execution = pipeline.start()
    described = execution.wait(timeout=120)
    assert described["PipelineExecutionStatus"] == "Succeeded", described.get("FailureReason")
    assert execution.result("train") == {"mean": 6.0}
    frame = execution.result("load")
    assert type(frame).__name__ == "Frame" and frame.rows == [1.0, 2.0, 6.0]


def test_a_condition_reading_a_non_json_result_fails_clearly_and_the_step_succeeds(deploy):
    pipeline = deploy("""
        @step
        def fit():
            return Frame([1.0])

        @step
        def deploy_model():
            return "deployed"

        check = ConditionStep(name="check", conditions=[ConditionGreaterThanOrEqualTo(left=fit(), right=1)],
                              if_steps=[deploy_model()], else_steps=[])
        pipeline = Pipeline(name="judge", steps=[check])
    """)
    execution = pipeline.start()
    execution.backend.wait(pipeline.name, execution.execution_id, 120)
    steps = by_name(execution)
    assert steps["fit"]["StepStatus"] == "Succeeded"
    assert steps["check"]["StepStatus"] == "Failed"
    reason = steps["check"]["FailureReason"]
    assert "return value is not available as JSON" in reason
    assert "The function return (<smprog_" in reason and "Frame object" in reason
    assert "is not JSON serializable" in reason


# -- bug 2: pipeline variables in decorator keywords ----------------------------------------


def test_pipeline_variables_in_step_keywords_compile_to_gets_and_resolve_at_run_time(deploy):
    pipeline = deploy("""
        instance_type = ParameterString("TrainInstanceType", default_value="ml.m5.xlarge")
        image = ParameterString("Image", default_value="python:3.11-slim")
        count = ParameterInteger("InstanceCount", default_value=1)
        runtime = ParameterInteger("MaxRuntime", default_value=3600)
        mode = ParameterString("Mode", default_value="fast")
        retries = ParameterInteger("Retries", default_value=1)
        from stepflow.workflow.parameters import ParameterBoolean
        spot = ParameterBoolean("Spot", default_value=False)

        @step(instance_type=instance_type, image_uri=image, instance_count=count,
              max_runtime_in_seconds=runtime, volume_size=ParameterInteger("Volume", default_value=30),
              max_retry_attempts=retries, use_spot_instances=spot,
              environment_variables={"MODE": mode, "RUN": ExecutionVariables.PIPELINE_EXECUTION_ID,
                                     "FIXED": "yes"})
        def train():
            import os
            return [os.environ["MODE"], os.environ["RUN"], os.environ["FIXED"]]

        pipeline = Pipeline(name="keywords", parameters=[instance_type, image, count, runtime, mode, retries, spot,
                                                          ParameterInteger("Volume", default_value=30)],
                            steps=[train()])
    """)
    definition = json.loads(pipeline.definition())
    arguments = definition["Steps"][0]["Arguments"]
    assert arguments["ResourceConfig"]["InstanceType"] == {"Get": "Parameters.TrainInstanceType"}
    assert arguments["ResourceConfig"]["InstanceCount"] == {"Get": "Parameters.InstanceCount"}
    assert arguments["ResourceConfig"]["VolumeSizeInGB"] == {"Get": "Parameters.Volume"}
    assert arguments["AlgorithmSpecification"]["TrainingImage"] == {"Get": "Parameters.Image"}
    assert arguments["StoppingCondition"]["MaxRuntimeInSeconds"] == {"Get": "Parameters.MaxRuntime"}
    assert arguments["Environment"]["MODE"] == {"Get": "Parameters.Mode"}
    assert arguments["Environment"]["RUN"] == {"Get": "Execution.PipelineExecutionId"}
    assert arguments["RetryStrategy"]["MaximumRetryAttempts"] == {"Get": "Parameters.Retries"}
    assert arguments["EnableManagedSpotTraining"] == {"Get": "Parameters.Spot"}

    execution = pipeline.start(parameters={"Mode": "thorough", "TrainInstanceType": "ml.c5.2xlarge"})
    described = execution.wait(timeout=120)
    assert described["PipelineExecutionStatus"] == "Succeeded", described.get("FailureReason")
    assert execution.result("train") == ["thorough", execution.execution_id, "yes"]


def test_a_pipeline_variable_where_the_compiler_needs_a_value_is_refused_at_the_users_line(tmp_path):
    from stepflow.errors import ValidationError
    from stepflow.workflow.function_step import step
    from stepflow.workflow.parameters import ParameterString

    with pytest.raises(ValidationError, match=r"@step\(role=\.\.\.\) cannot be a pipeline variable") as info:
        step(role=ParameterString("Role"))  # marker: role
    assert info.value.location.file.endswith("test_sagemaker_programs.py")
    assert "instance_type" in info.value.message  # says what does accept variables


# -- bug 3: the function and arguments are captured at the call ------------------------------


def test_rebinding_a_global_after_the_call_does_not_change_what_runs(deploy):
    pipeline = deploy("""
        threshold = 0.5
        settings = {"epochs": 3}

        @step
        def train(config):
            return {"threshold": threshold, "epochs": config["epochs"]}

        result = train(settings)
        threshold = ExecutionVariables.PIPELINE_NAME   # rebound after the call
        settings["epochs"] = 99                        # mutated after the call
        pipeline = Pipeline(name="captured", steps=[result])
    """)
    execution = pipeline.start()
    described = execution.wait(timeout=120)
    assert described["PipelineExecutionStatus"] == "Succeeded", described.get("FailureReason")
    assert execution.result("train") == {"threshold": 0.5, "epochs": 3}


def test_a_pipeline_variable_read_from_a_global_is_reported_at_the_call(tmp_path):
    path = tmp_path / "smprog_global.py"
    path.write_text(HEADER + textwrap.dedent("""
        name = ExecutionVariables.PIPELINE_NAME

        @step
        def report():
            return name

        result = report()
        pipeline = Pipeline(name="globals", steps=[result])
    """))
    with pytest.raises(SerializationError) as info:
        load_pipeline(str(path))
    cause = info.value
    while not isinstance(cause, SerializationError) or cause.location is None:
        cause = cause.__cause__
    assert "report() cannot be pickled" in cause.message
    assert "pass it as an argument instead" in cause.message
    assert cause.location.line == HEADER.count("\n") + 8  # the line `result = report()`


# -- bug 8: wait() raises on failure; result() raises RemoteFunctionError -------------------


def test_wait_raises_the_sdks_waiter_error_and_result_carries_the_steps_exception(deploy):
    from stepflow.remote_function.errors import RemoteFunctionError

    pipeline = deploy("""
        @step
        def train():
            raise ValueError("the data has no label column")

        pipeline = Pipeline(name="failing", steps=[train()])
    """)
    execution = pipeline.start()
    with pytest.raises(WaiterError) as waited:
        execution.wait(delay=1, max_attempts=120)
    assert "Waiter encountered a terminal failure state" in str(waited.value)
    assert "ValueError: the data has no label column" in str(waited.value)
    assert waited.value.last_response["PipelineExecutionStatus"] == "Failed"

    with pytest.raises(RemoteFunctionError, match="step train is not in Completed status") as info:
        execution.result("train")
    assert isinstance(info.value.exception, ValueError)
    assert str(info.value.exception) == "the data has no label column"
    assert info.value.__cause__ is info.value.exception


def test_wait_that_runs_out_of_attempts_raises_max_attempts_exceeded(deploy, shared):
    pipeline = deploy(f"""
        @step
        def slow():
            import os, time
            while not os.path.exists({str(shared / "release")!r}):
                time.sleep(0.05)

        pipeline = Pipeline(name="slow", steps=[slow()])
    """)
    execution = pipeline.start()
    with pytest.raises(WaiterError, match="Max attempts exceeded"):
        execution.wait(delay=0.1, max_attempts=2)
    (shared / "release").touch()
    assert execution.wait(timeout=120)["PipelineExecutionStatus"] == "Succeeded"


# -- bug 4: list_steps() as SageMaker lists them ---------------------------------------------


def test_list_steps_returns_the_started_steps_newest_first_without_skipped_branches(deploy):
    pipeline = deploy("""
        @step
        def prepare():
            return [3, 4]

        @step
        def evaluate(data):
            return {"accuracy": sum(data) / 10}

        @step
        def register(metrics):
            return "registered"

        @step
        def retrain():
            return "retrained"

        metrics = evaluate(prepare())
        check = ConditionStep(name="check",
                              conditions=[ConditionGreaterThanOrEqualTo(left=metrics["accuracy"], right=0.5)],
                              if_steps=[register(metrics)], else_steps=[retrain()])
        pipeline = Pipeline(name="listing", steps=[check])
    """)
    execution = pipeline.start()
    assert execution.wait(timeout=120)["PipelineExecutionStatus"] == "Succeeded"
    listed = execution.list_steps()
    assert [s["StepName"] for s in listed] == ["register", "check", "evaluate", "prepare"]
    starts = [s["StartTime"] for s in listed]
    assert starts == sorted(starts, reverse=True)
    assert listed[1]["Metadata"] == {"Condition": {"Outcome": "True"}}
    # Our own views keep every step: the CLI shows why retrain did not run.
    everything = {s["StepName"]: s for s in execution.backend.all_steps(pipeline.name, execution.execution_id)}
    assert everything["retrain"]["StepStatus"] == "Skipped"
    assert "evaluated to true" in everything["retrain"]["SkipReason"]


def test_a_step_functions_training_job_properties_are_read_downstream_on_the_local_backend(deploy):
    """The SDK refuses ``.properties`` on a @step, but a ``Properties`` built on the step reads
    its job's (``Properties(step_name=..., shape_name="DescribeTrainingJobResponse")`` in
    the SDK): the local backend describes each attempt's job, as SageMaker does."""
    import botocore.session
    from botocore.validate import ParamValidator

    from stepflow import layout

    pipeline = deploy("""
        from stepflow.workflow.conditions import ConditionEquals
        from stepflow.workflow.properties import Properties
        from stepflow.workflow.step_outputs import get_step

        @step
        def train():
            return 1

        model = train()
        job = Properties(get_step(model))

        @step
        def report(name, arn, artifacts):
            return {"name": name, "arn": arn, "artifacts": artifacts}

        check = ConditionStep(name="check", conditions=[ConditionEquals(left=job.TrainingJobStatus, right="Completed")],
                              if_steps=[report(job.TrainingJobName, job.TrainingJobArn,
                                               job.ModelArtifacts.S3ModelArtifacts)],
                              else_steps=[FailStep(name="stop", error_message="train did not complete")])
        pipeline = Pipeline(name="training-job", steps=[check])
    """)
    execution = pipeline.start()
    assert execution.wait(timeout=120)["PipelineExecutionStatus"] == "Succeeded"
    reported = execution.result("report")
    key = layout.in_pipeline("training-job", layout.job_description_key(execution.execution_id, "train", 1))
    described = json.loads(pipeline.session.store.get_bytes(key))
    assert described["TrainingJobStatus"] == "Completed"
    assert reported == {"name": described["TrainingJobName"], "arn": described["TrainingJobArn"],
                        "artifacts": described["ModelArtifacts"]["S3ModelArtifacts"]}
    assert reported["name"] == f"{execution.execution_id}-train-1"
    assert reported["arn"] == f"{execution.arn.split(':pipeline/')[0]}:training-job/{reported['name']}"
    assert by_name(execution)["train"]["Metadata"] == {"TrainingJob": {"Arn": reported["arn"]}}
    shape = botocore.session.get_session().get_service_model("sagemaker").operation_model(
        "DescribeTrainingJob").output_shape
    report = ParamValidator().validate(described, shape)
    assert not report.has_errors(), report.generate_report()


# -- bug 10: parallelism_config and selective_execution_config -----------------------------


def test_parallelism_config_caps_the_steps_running_at_once(deploy):
    from stepflow.workflow.parallelism_config import ParallelismConfiguration

    pipeline = deploy("""
        def _window():
            import time
            start = time.time(); time.sleep(0.6); return (start, time.time())

        @step
        def a():
            return _window()

        @step
        def b():
            return _window()

        @step
        def c():
            return _window()

        pipeline = Pipeline(name="capped", steps=[a(), b(), c()])
    """)

    def assert_one_at_a_time(execution) -> None:
        assert execution.wait(timeout=120)["PipelineExecutionStatus"] == "Succeeded"
        windows = sorted(execution.result(name) for name in ("a", "b", "c"))
        for (_, end), (start, _) in itertools.pairwise(windows):
            assert end <= start, f"steps overlapped under a parallelism of 1: {windows}"

    assert_one_at_a_time(pipeline.start(
        parallelism_config=ParallelismConfiguration(max_parallel_execution_steps=1)))
    # the pipeline's own configuration, for executions started without one
    pipeline.upsert(parallelism_config={"MaxParallelExecutionSteps": 1})
    assert pipeline.describe()["ParallelismConfiguration"] == {"MaxParallelExecutionSteps": 1}
    assert_one_at_a_time(pipeline.start())


def test_selective_execution_runs_the_selected_step_on_the_source_executions_results(deploy, shared):
    from stepflow.workflow.selective_execution_config import SelectiveExecutionConfig

    runs = shared / "runs.log"
    pipeline = deploy(f"""
        def _note(name):
            with open({str(runs)!r}, "a") as f:
                f.write(name + "\\n")

        @step
        def prepare():
            _note("prepare")
            return Frame([1.0, 2.0, 3.0])

        @step
        def train(frame, lr):
            _note("train")
            return {{"mean": frame.mean(), "lr": lr}}

        @step
        def evaluate(model):
            _note("evaluate")
            return model["mean"] > 1

        lr = ParameterString("LearningRate", default_value="0.1")
        pipeline = Pipeline(name="selective", parameters=[lr], steps=[evaluate(train(prepare(), lr))])
    """)
    source = pipeline.start()
    assert source.wait(timeout=120)["PipelineExecutionStatus"] == "Succeeded"
    runs.write_text("")

    rerun = pipeline.start(parameters={"LearningRate": "0.5"}, selective_execution_config=SelectiveExecutionConfig(
        source_pipeline_execution_arn=source.arn, selected_steps=["train"]))
    assert rerun.wait(timeout=120)["PipelineExecutionStatus"] == "Succeeded"
    assert runs.read_text() == "train\n"  # only the selected step ran
    assert rerun.result("train") == {"mean": 2.0, "lr": "0.5"}
    assert rerun.result("prepare").rows == [1.0, 2.0, 3.0]  # the source's result
    listed = {s["StepName"]: s for s in rerun.list_steps()}
    assert set(listed) == {"train", "prepare"}  # evaluate was not selected: never started
    assert listed["prepare"]["SelectiveExecutionResult"]["SourcePipelineExecutionArn"].endswith(
        source.execution_id)
    assert listed["prepare"]["AttemptCount"] == 0

    # reference_latest_execution (the default): the latest execution is the source
    latest = pipeline.start(selective_execution_config=SelectiveExecutionConfig(selected_steps=["evaluate"]))
    assert latest.wait(timeout=120)["PipelineExecutionStatus"] == "Succeeded"
    assert latest.result("evaluate") is True
    assert runs.read_text() == "train\nevaluate\n"


def test_selective_execution_refuses_a_step_whose_inputs_did_not_succeed(deploy):
    from stepflow.errors import ValidationError
    from stepflow.workflow.selective_execution_config import SelectiveExecutionConfig

    pipeline = deploy("""
        @step
        def prepare():
            raise ValueError("no data")

        @step
        def train(data):
            return data

        pipeline = Pipeline(name="selective-bad", steps=[train(prepare())])
    """)
    source = pipeline.start()
    with pytest.raises(WaiterError, match="terminal failure state"):
        source.wait(timeout=120)
    with pytest.raises(ValidationError, match="step 'train' needs 'prepare', which is not selected and did "
                                              "not succeed in source execution"):
        pipeline.start(selective_execution_config=SelectiveExecutionConfig(
            source_pipeline_execution_arn=source.arn, selected_steps=["train"]))


def test_execution_retry_goes_on_in_place(deploy, shared):
    fixed = shared / "fixed"
    pipeline = deploy(f"""
        @step
        def prepare():
            return 20

        @step
        def train(x):
            import os
            if not os.path.exists({str(fixed)!r}):
                raise RuntimeError("flaky dependency")
            return x + 1

        pipeline = Pipeline(name="retry-api", steps=[train(prepare())])
    """)
    execution = pipeline.start()
    with pytest.raises(WaiterError, match="terminal failure state"):
        execution.wait(timeout=120)
    fixed.touch()
    execution.retry()
    assert execution.wait(timeout=120)["PipelineExecutionStatus"] == "Succeeded"
    assert execution.result("train") == 21
    listed = {s["StepName"]: s["AttemptCount"] for s in execution.list_steps()}
    assert listed == {"prepare": 1, "train": 2}


# -- bug 5: runtime properties of classic steps fail at compile, not at start --------------


PROCESSING = """
from stepflow.workflow.processing import ProcessingOutput, ScriptProcessor
from stepflow.workflow.steps import ProcessingStep
from stepflow.workflow.conditions import ConditionEquals

processor = ScriptProcessor(image_uri="python:3.11-slim", command=["python3"],
                            role="arn:aws:iam::1:role/R", instance_type="ml.m5.large", instance_count=1)
prep = ProcessingStep(name="prep", step_args=processor.run(
    outputs=[ProcessingOutput(output_name="train", source="/opt/ml/processing/train")], code="prep.py"))
"""


@pytest.mark.parametrize("use", [
    """
@step
def train(status):
    return status

result = train(prep.properties.ProcessingJobStatus)  # reads a job property
pipeline = Pipeline(name="job-props", steps=[result])
""",
    """
check = ConditionStep(name="check", conditions=[ConditionEquals(left=prep.properties.ProcessingJobArn,
                                                                right="x")], if_steps=[], else_steps=[])
pipeline = Pipeline(name="job-props", steps=[check])
""",
])
def test_a_job_property_compiles_as_in_sagemaker_and_the_backends_that_run_the_job_report_it(tmp_path, monkeypatch,
                                                                                            use):
    from stepflow.backends.capabilities import check_runnable

    monkeypatch.chdir(tmp_path)
    (tmp_path / "prep.py").write_text("print('prep')\n")
    path = tmp_path / f"smprog_{next(_MODULE_NUMBERS)}.py"
    path.write_text(HEADER + PROCESSING + use)
    pipeline = load_pipeline(str(path))
    pipeline._session = Session(f"file://{tmp_path / 'store'}")
    definition = json.loads(pipeline.definition())  # legal SageMaker: compiles
    check_runnable("job-props", definition, "sagemaker")  # SageMaker's jobs report their properties
    check_runnable("job-props", definition, "kubernetes")  # and so do the Jobs the engine describes


def test_a_job_property_a_backend_does_not_report_is_refused_at_publish(tmp_path, monkeypatch):
    from stepflow.backends.capabilities import check_runnable
    from stepflow.errors import BackendError

    monkeypatch.chdir(tmp_path)
    (tmp_path / "prep.py").write_text("print('prep')\n")
    path = tmp_path / f"smprog_{next(_MODULE_NUMBERS)}.py"
    path.write_text(HEADER + PROCESSING + """
@step
def train(message):
    return message

result = train(prep.properties.ExitMessage)  # SageMaker's processing jobs report it; Kubernetes Jobs do not
pipeline = Pipeline(name="job-props", steps=[result])
""")
    pipeline = load_pipeline(str(path))
    pipeline._session = Session(f"file://{tmp_path / 'store'}")
    definition = json.loads(pipeline.definition())
    check_runnable("job-props", definition, "sagemaker")
    with pytest.raises(BackendError) as info:
        check_runnable("job-props", definition, "kubernetes")
    message = info.value.message
    assert "step 'train' reads Steps.prep.ExitMessage, a property of the job which the kubernetes backend " \
           "does not report (of a Processing step's job it reports: CreationTime, FailureReason, " in message
    assert "ProcessingJobStatus" in message and "backends that do: sagemaker" in message
    assert info.value.reason == "PropertyNotAvailable" and info.value.kind == "User"


def test_a_property_neither_the_definition_nor_the_job_has_is_refused_at_compile_at_the_readers_line(
        tmp_path, monkeypatch):
    from stepflow.errors import ValidationError

    monkeypatch.chdir(tmp_path)
    (tmp_path / "prep.py").write_text("print('prep')\n")
    source = HEADER + PROCESSING + """
@step
def train(status):
    return status

result = train(prep.properties.ProcessingJobStatuz)  # a typo
pipeline = Pipeline(name="job-props", steps=[result])
"""
    path = tmp_path / f"smprog_{next(_MODULE_NUMBERS)}.py"
    path.write_text(source)
    pipeline = load_pipeline(str(path))
    pipeline._session = Session(f"file://{tmp_path / 'store'}")
    with pytest.raises(ValidationError) as info:
        pipeline.definition()
    message = info.value.message
    assert "Steps.prep.ProcessingJobStatuz" in message
    assert "neither 'prep''s definition sets nor its job reports" in message
    assert "ProcessingJobStatus" in message and "ProcessingOutputConfig" in message
    assert info.value.reason == "PropertyNotAvailable"
    expected = next(n for n, line in enumerate(source.splitlines(), 1) if line.startswith("result = train("))
    assert info.value.location.line == expected


def test_an_undeclared_parameter_in_a_keyword_is_reported_at_the_calls_line(tmp_path, monkeypatch):
    from stepflow.errors import ValidationError

    monkeypatch.chdir(tmp_path)
    source = HEADER + textwrap.dedent("""
        instance_type = ParameterString("TrainInstanceType", default_value="ml.m5.xlarge")

        @step(instance_type=instance_type)
        def train():
            return 1

        result = train()
        pipeline = Pipeline(name="undeclared", steps=[result])
    """)
    path = tmp_path / f"smprog_{next(_MODULE_NUMBERS)}.py"
    path.write_text(source)
    pipeline = load_pipeline(str(path))
    pipeline._session = Session(f"file://{tmp_path / 'store'}")
    with pytest.raises(ValidationError, match="uses parameter 'TrainInstanceType', which is not in") as info:
        pipeline.definition()
    assert info.value.location.file == path.name
    assert info.value.location.line == source.splitlines().index("result = train()") + 1
