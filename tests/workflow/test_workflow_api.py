"""The @step programming model: decorator forms, DelayedReturn rules, names, errors."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from tests.fixtures import container_args, flag, steps_by_name

import stepflow
from stepflow.backends import NoBackend
from stepflow.compiler.graph import build_graph
from stepflow.errors import BackendError, SerializationError, ValidationError
from stepflow.workflow.condition_step import ConditionStep
from stepflow.workflow.conditions import ConditionEquals, ConditionGreaterThanOrEqualTo
from stepflow.workflow.entities import PipelineVariableUsageError
from stepflow.workflow.execution_variables import ExecutionVariables
from stepflow.workflow.fail_step import FailStep
from stepflow.workflow.function_step import DelayedReturn, step
from stepflow.workflow.functions import Join, JsonGet
from stepflow.workflow.parameters import ParameterInteger, ParameterString
from stepflow.workflow.pipeline import Pipeline
from stepflow.workflow.retry import StepExceptionTypeEnum, StepRetryPolicy
from stepflow.workflow.step_outputs import get_step

HERE = Path(__file__).name


def _line_of(text: str) -> int:
    return next(n for n, line in enumerate(Path(__file__).read_text().splitlines(), 1)
                if text in line)


def test_bare_and_parameterised_decorator_return_delayed_returns(compile_):
    @step
    def bare(x):
        return x

    @step(name="named", instance_type="ml.c5.xlarge")
    def with_args(x):
        return x

    a = bare(1)
    b = with_args(a)
    assert isinstance(a, DelayedReturn) and isinstance(b, DelayedReturn)
    assert get_step(b).depends_on == [get_step(a)]
    d = compile_(Pipeline(name="forms", steps=[b])).definition
    steps = steps_by_name(d)
    assert set(steps) == {"bare", "named"}
    assert steps["named"]["Arguments"]["ResourceConfig"]["InstanceType"] == "ml.c5.xlarge"
    assert steps["named"]["DependsOn"] == ["bare"]


def test_every_decorator_keyword_is_accepted_and_lands_in_the_definition(compile_):
    @step(name="all-keywords", display_name="All keywords", description="every keyword",
          retry_policies=[StepRetryPolicy([StepExceptionTypeEnum.SERVICE_FAULT],
                                          expire_after_mins=5)],
          dependencies=None, pre_execution_commands=["echo hi"], pre_execution_script=None,
          environment_variables={"MODE": "fast"}, image_uri="my/image:1", instance_count=2,
          instance_type="ml.g5.xlarge", job_conda_env="py311", job_name_prefix="allkw",
          keep_alive_period_in_seconds=60, max_retry_attempts=4, max_runtime_in_seconds=600,
          role="arn:aws:iam::1:role/R", security_group_ids=["sg-1"], subnets=["subnet-1"],
          tags=[{"Key": "team", "Value": "ml"}], volume_kms_key="kms-vol", volume_size=50,
          encrypt_inter_container_traffic=True, spark_config=None, use_spot_instances=True,
          max_wait_time_in_seconds=1200)
    def f():
        return 1

    s = steps_by_name(compile_(Pipeline(name="kw", steps=[f()])).definition)["all-keywords"]
    args = s["Arguments"]
    assert s["DisplayName"] == "All keywords" and s["Description"] == "every keyword"
    assert s["RetryPolicies"] == [{"BackoffRate": 2.0, "IntervalSeconds": 1,
                                   "ExpireAfterMin": 5, "ExceptionType": ["Step.SERVICE_FAULT"]}]
    assert args["RoleArn"] == "arn:aws:iam::1:role/R"
    assert args["StoppingCondition"] == {"MaxRuntimeInSeconds": 600, "MaxWaitTimeInSeconds": 1200}
    assert args["RetryStrategy"] == {"MaximumRetryAttempts": 4}
    assert args["Tags"] == [{"Key": "team", "Value": "ml"}]
    assert args["ResourceConfig"] == {"VolumeSizeInGB": 50, "InstanceCount": 2,
                                      "InstanceType": "ml.g5.xlarge", "VolumeKmsKeyId": "kms-vol",
                                      "KeepAlivePeriodInSeconds": 60}
    assert args["EnableInterContainerTrafficEncryption"] is True
    assert args["EnableManagedSpotTraining"] is True
    assert args["VpcConfig"] == {"Subnets": ["subnet-1"], "SecurityGroupIds": ["sg-1"]}
    assert args["Environment"] == {"MODE": "fast", "AWS_DEFAULT_REGION": "us-east-1"}
    assert args["AlgorithmSpecification"]["TrainingImage"] == "my/image:1"
    assert flag(s, "--job_conda_env") == "py311"


def test_custom_job_prefix_names_training_jobs(compile_):
    from stepflow.workflow.pipeline_definition_config import PipelineDefinitionConfig

    @step
    def _weird_name_fn():
        return 1

    p = Pipeline(name="prefix", steps=[_weird_name_fn()],
                 pipeline_definition_config=PipelineDefinitionConfig(use_custom_job_prefix=True))
    s = compile_(p).definition["Steps"][0]
    assert s["Arguments"]["TrainingJobName"] == "weird-name-fn"


def test_kwargs_functions_accept_extra_keywords(compile_):
    @step
    def flexible(a, **options):
        return a, options

    result = flexible(1, alpha=2, beta="x")
    bundle = compile_(Pipeline(name="kwargs", steps=[result]))
    from stepflow.serialization import deserialize

    key = next(f.key for f in bundle.files if f.key.endswith("arguments/payload.pkl"))
    payload = bundle.path_of(key).read_bytes()
    metadata = bundle.path_of(key.replace("payload.pkl", "metadata.json")).read_bytes()
    assert deserialize(payload, metadata) == ((1,), {"alpha": 2, "beta": "x"})


def test_wrong_call_signature_is_a_type_error_naming_the_function():
    @step
    def two(a, b):
        return a

    with pytest.raises(TypeError, match=r"two\(\): too many positional arguments"):
        two(1, 2, 3)
    with pytest.raises(TypeError, match=r"two\(\): missing a required argument: 'b'"):
        two(1)


@pytest.mark.parametrize("kwargs, message", [
    ({"dependencies": "auto_capture"}, "auto_capture' is not supported"),
    ({"pre_execution_commands": ["a"], "pre_execution_script": "x.sh"},
     "Only one of pre_execution_commands or pre_execution_script"),
    ({"spark_config": object()}, "spark_config is not supported"),
])
def test_decorator_rejects_unsupported_combinations_at_the_decorator_line(kwargs, message):
    with pytest.raises(ValidationError, match=message) as info:
        step(**kwargs)
    assert info.value.location.file.endswith(HERE)


def test_bool_of_a_delayed_return_raises_with_advice_and_the_users_line():
    @step
    def score():
        return 1

    result = score()
    with pytest.raises(PipelineVariableUsageError, match="ConditionStep") as info:
        if result:  # marker: bool-line
            pass
    assert info.value.location.line == _line_of("marker: bool-line")
    assert isinstance(info.value, TypeError)


def test_iteration_and_unpacking_raise_with_advice():
    @step
    def pair():
        return 1, 2

    result = pair()
    with pytest.raises(PipelineVariableUsageError, match=r"Index it instead \(value\[0\]"):
        a, b = result
    with pytest.raises(PipelineVariableUsageError, match="Cannot iterate"):
        for _ in result:
            pass
    with pytest.raises(PipelineVariableUsageError, match="len"):
        len(result)


def test_string_conversion_and_concatenation_raise_with_advice():
    @step
    def name():
        return "x"

    result = name()
    with pytest.raises(PipelineVariableUsageError, match="to_string"):
        f"{result}"
    with pytest.raises(PipelineVariableUsageError, match="Join"):
        result + "suffix"
    assert result.to_string().expr == {"Std:Join": {"On": "", "Values": [result.expr]}}


def test_indexing_builds_the_json_path_and_sequence_returns_take_only_ints():
    @step
    def metrics() -> dict:
        return {}

    @step
    def pair() -> tuple[int, int]:
        return 1, 2

    m = metrics()
    assert m["scores"][0]["f1"].expr["Std:JsonGet"]["Path"] == "Result['scores'][0]['f1']"
    assert m.expr["Std:JsonGet"]["Path"] == "Result"
    p = pair()
    assert p[1].expr["Std:JsonGet"]["Path"] == "Result[1]"
    with pytest.raises(ValidationError, match="Expected an integer index"):
        p["k"]
    with pytest.raises(ValidationError, match="int or a str"):
        m[1:2]


def test_function_step_api_rules():
    @step
    def f():
        return 1

    s = get_step(f())
    with pytest.raises(ValidationError, match="add_depends_on"):
        s.depends_on = []
    with pytest.raises(ValidationError, match="has no properties"):
        _ = s.properties
    with pytest.raises(ValidationError, match="takes a list"):
        s.add_depends_on(get_step(f()))
    with pytest.raises(ValidationError, match="value returned by calling an @step"):
        get_step(s)


@pytest.mark.parametrize("make", [
    lambda: Join(on="", values=["a"]),
    lambda: JsonGet(s3_uri="s3://x/y.json", json_path="a"),
])
def test_join_and_jsonget_are_rejected_as_arguments(make):
    @step
    def f(x):
        return x

    with pytest.raises(ValidationError, match="not supported for function arguments"):
        f(make())


def test_auto_names_are_the_function_name_with_stable_suffixes(compile_):
    @step
    def train(x):
        return x

    @step(name="train-2")
    def taken():
        return 0

    first = train(1)
    second = train(first)
    third = train(taken())
    pipeline = Pipeline(name="names", steps=[second, third])
    d = compile_(pipeline).definition
    assert set(steps_by_name(d)) == {"train", "train-3", "train-4", "train-2"}
    names = build_graph(pipeline).names
    assert names.get(get_step(first)) == "train" and names.get(get_step(second)) == "train-3"
    # The compiler returns names and never writes them into the steps; the names of the
    # latest compile stay visible (SageMaker code reads get_step(x).name to fetch results).
    assert get_step(second).name == "train-3" and vars(get_step(second)).get("_name") is None
    assert "uuid" not in str(d)


def test_invalid_step_name_names_the_step_and_the_line(compile_):
    @step(name="bad name!")
    def f():
        return 1

    result = f()  # marker: invalid-name
    with pytest.raises(ValidationError, match=r"Invalid step name 'bad name!'") as info:
        compile_(Pipeline(name="p", steps=[result]))
    assert info.value.reason == "InvalidName"
    assert info.value.location.line == _line_of("marker: invalid-name")


def test_duplicate_names_found_through_traversal_and_branches_are_errors(compile_):
    @step(name="same")
    def a():
        return 1

    @step(name="same")
    def b(x):
        return x

    first = a()  # marker: dup-first
    leaf = b(first)  # marker: dup-second
    with pytest.raises(ValidationError, match="Two steps are named 'same'") as info:
        compile_(Pipeline(name="p", steps=[leaf]))
    assert f"{HERE}:{_line_of('marker: dup-first')}" in info.value.message
    assert f"{HERE}:{_line_of('marker: dup-second')}" in info.value.message
    assert info.value.reason == "DuplicateStepName"

    cond = ConditionStep(name="gate", conditions=[ConditionEquals(left=a(), right=1)],
                         if_steps=[FailStep(name="gate")])
    with pytest.raises(ValidationError, match="Two steps are named 'gate'"):
        compile_(Pipeline(name="p2", steps=[cond]))


def test_a_cycle_is_reported_with_its_path(compile_):
    @step
    def a():
        return 1

    @step
    def b(x):
        return x

    @step
    def c(x):
        return x

    first = a()
    last = c(b(first))
    get_step(first).add_depends_on([last])
    cycle = r"dependency cycle: (a -> b -> c -> a|b -> c -> a -> b|c -> a -> b -> c)"
    with pytest.raises(ValidationError, match=cycle) as info:
        compile_(Pipeline(name="p", steps=[last]))
    assert info.value.reason == "DependencyCycle"


def test_string_dependency_must_name_a_step_of_the_pipeline(compile_):
    @step
    def a():
        return 1

    r = a()
    get_step(r).add_depends_on(["missing"])
    with pytest.raises(ValidationError, match="depends on 'missing', which is not a step"):
        compile_(Pipeline(name="p", steps=[r]))


def test_nested_pipeline_variable_is_refused_at_the_call_naming_argument_and_line():
    @step
    def a():
        return 1

    @step
    def b(values):
        return values

    with pytest.raises(SerializationError, match=r"top-level argument") as info:
        b([a(), 2])  # marker: nested
    assert "b(): argument 'values' (type list)" in info.value.message
    assert info.value.location.line == _line_of("marker: nested")
    assert info.value.reason == "NestedPipelineVariable"


def test_pipeline_variable_from_a_global_or_closure_is_refused_at_the_call():
    threshold = ParameterInteger(name="T", default_value=1)

    @step
    def uses_closure():
        return threshold

    with pytest.raises(SerializationError, match="pass it as an argument instead") as info:
        uses_closure()  # marker: closure
    assert info.value.location.line == _line_of("marker: closure")


def test_unpicklable_argument_is_refused_at_the_call_naming_argument_and_type():
    @step
    def locked(guard):
        return guard

    with pytest.raises(SerializationError) as info:
        locked(guard=threading.Lock())  # marker: lock
    assert "argument 'guard' (type lock)" in info.value.message
    assert info.value.location.line == _line_of("marker: lock")


def test_undeclared_parameter_and_bad_default_are_errors(compile_):
    region = ParameterString(name="Region", default_value="eu")

    @step
    def f(r):
        return r

    with pytest.raises(ValidationError, match="uses parameter 'Region', which is not in"):
        compile_(Pipeline(name="p", steps=[f(region)]))
    with pytest.raises(ValidationError, match="default value of type str"):
        ParameterInteger(name="N", default_value="3")


def test_invalid_pipeline_name(compile_):
    @step
    def f():
        return 1

    with pytest.raises(ValidationError, match="Invalid pipeline name 'has space'"):
        compile_(Pipeline(name="has space", steps=[f()]))


def test_description_is_the_docstring_and_nothing_leaks_local_paths(compile_):
    @step
    def documented():
        """Train the model.

        Second paragraph."""
        return 1

    @step
    def undocumented():
        return 1

    bundle = compile_(Pipeline(name="docs", steps=[documented(), undocumented()]))
    steps = steps_by_name(bundle.definition)
    assert steps["documented"]["Description"] == "Train the model.\n\nSecond paragraph."
    assert "Description" not in steps["undocumented"]
    assert steps["documented"]["DisplayName"] == "test_workflow_api.documented"
    text = bundle.definition_bytes.decode()
    assert str(Path(__file__).parent) not in text and "/tests/" not in text


def test_graph_is_inferred_from_leaves_with_condition_branches_nested(compile_):
    @step
    def prep():
        return {"x": 1}

    @step
    def fit(d):
        return d

    @step
    def judge(m, d):
        return {"ok": 1}

    @step
    def ship(m):
        return m

    @step
    def unrelated():
        return 0

    d = prep()
    m = fit(d)
    j = judge(m, d)
    unrelated()  # never reaches the pipeline: not upstream of a leaf
    gate = ConditionStep(name="gate", conditions=[ConditionGreaterThanOrEqualTo(j["ok"], 1)],
                         if_steps=[ship(m)], else_steps=[FailStep(name="stop", error_message=Join(
                             on=" ", values=["score", j["ok"]]))])
    definition = compile_(Pipeline(name="g", steps=[gate])).definition
    assert [s["Name"] for s in definition["Steps"]] == ["gate", "judge", "fit", "prep"]
    gate_req = definition["Steps"][0]
    assert gate_req["DependsOn"] == ["judge"]
    assert [s["Name"] for s in gate_req["Arguments"]["IfSteps"]] == ["ship"]
    assert gate_req["Arguments"]["ElseSteps"][0]["DependsOn"] == ["judge"]
    steps = steps_by_name(definition)
    assert flag(steps["prep"], "--serialize_output_to_json") == "true"
    assert flag(steps["fit"], "--serialize_output_to_json") == "true"
    assert flag(steps["judge"], "--serialize_output_to_json") == "true"
    assert "--serialize_output_to_json" not in container_args(steps["ship"])
    assert steps["judge"]["DependsOn"] == ["fit", "prep"]
    refs = container_args(steps["judge"])
    i = refs.index("--property_references")
    assert refs[i + 1:i + 7] == [
        "Execution.PipelineExecutionId", {"Get": "Execution.PipelineExecutionId"},
        "Steps.fit.OutputDataConfig.S3OutputPath",
        {"Std:Join": {"On": "", "Values": [{"Get": "Steps.fit.OutputDataConfig.S3OutputPath"}]}},
        "Steps.prep.OutputDataConfig.S3OutputPath",
        {"Std:Join": {"On": "", "Values": [{"Get": "Steps.prep.OutputDataConfig.S3OutputPath"}]}}]


def test_pipeline_and_execution_variable_arguments_become_property_references(compile_):
    n = ParameterInteger(name="N", default_value=3)
    s = ParameterString(name="S")

    @step
    def f(a, b, c):
        return a

    req = compile_(Pipeline(name="refs", parameters=[n, s], steps=[
        f(n, s, ExecutionVariables.PIPELINE_NAME)])).definition["Steps"][0]
    args = container_args(req)
    i = args.index("--property_references")
    assert args[i + 3:i + 9] == [
        "Parameters.N", {"Std:Join": {"On": "", "Values": [{"Get": "Parameters.N"}]}},
        "Parameters.S", {"Get": "Parameters.S"},
        "Execution.PipelineName", {"Get": "Execution.PipelineName"}]


def test_sagemaker_session_is_an_alias_and_running_needs_a_backend(session):
    @step
    def f():
        return 1

    p = Pipeline(name="nobackend", steps=[f()], sagemaker_session=session)
    assert p.session is session and p.sagemaker_session is session
    p._session = type(session)(session.s3_root_uri, backend=NoBackend())
    with pytest.raises(BackendError, match="no execution backend is configured") as info:
        p.start()
    assert info.value.reason == "NoBackend"
    with pytest.raises(BackendError, match="no execution backend is configured"):
        p.upsert(role_arn="arn:aws:iam::1:role/R")
    with pytest.raises(ValidationError, match="both session= and sagemaker_session="):
        Pipeline(name="x", session=session, sagemaker_session=type(session)())


def test_top_level_reexports_the_common_names():
    for name in ("step", "Pipeline", "ConditionStep", "FailStep", "ParameterFloat",
                 "ExecutionVariables", "Join", "JsonGet", "get_step", "ProcessingStep",
                 "ConditionGreaterThanOrEqualTo", "Session"):
        assert hasattr(stepflow, name), name
    from stepflow.workflow import conditions

    assert conditions.GreaterThanOrEqualTo is conditions.ConditionGreaterThanOrEqualTo
    for short in ("Equals", "GreaterThan", "LessThan", "LessThanOrEqualTo", "In", "Not", "Or"):
        assert hasattr(conditions, short)
