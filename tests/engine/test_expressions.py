"""evaluate / resolve / conditions / container arguments."""

from __future__ import annotations

import pytest

from stepflow.engine import (
    Context,
    DocumentsNeeded,
    ExpressionError,
    Plan,
    UnreadableDocument,
    evaluate,
    evaluate_conditions,
    execution_context,
    new_execution,
    resolve,
    resolve_container_arguments,
    to_text,
)

from .helpers import T0, condition, definition, get, join, json_get, reference_definition, results_uri, training

STEPS = {
    "train": training("train"),
    "prep": {"Name": "prep", "Type": "Processing", "Arguments": {"ProcessingOutputConfig": {"Outputs": [
        {"OutputName": "train", "S3Output": {"S3Uri": join("/", "s3://b", get("Execution.PipelineExecutionId"), "tr")}},
        {"OutputName": "test", "S3Output": {"S3Uri": "s3://b/te"}}]}}},
    "check": condition("check", []),
    **{name: training(name) for name in ("evaluate", "e", "a", "b", "x", "y")},
}


def context(documents=None, outcomes=None, **parameters) -> Context:
    return Context(parameters={"Epochs": 10, "Rate": 6.0, "Flag": True, "Name": "x", **parameters},
                   execution={"PipelineExecutionId": "e1", "PipelineName": "pipe"},
                   steps=STEPS, documents=documents or {}, condition_outcomes=outcomes or {})


@pytest.mark.parametrize("value, text", [
    (True, "true"), (False, "false"), (6.0, "6.0"), (10, "10"), (1e-05, "1e-05"), ("s", "s"), (None, "null"),
    ([1, "a"], '[1,"a"]'), ({"k": 1.5}, '{"k":1.5}'),
])
def test_to_text_matches_the_service(value, text):
    assert to_text(value) == text


def test_get_parameters_execution_and_literals():
    assert evaluate(get("Parameters.Epochs"), context()) == 10
    assert evaluate(get("Execution.PipelineExecutionId"), context()) == "e1"
    assert evaluate("plain", context()) == "plain"
    assert evaluate(3, context()) == 3


def test_join_stringifies_each_value():
    expr = join("-", get("Parameters.Epochs"), get("Parameters.Rate"), get("Parameters.Flag"), "z")
    assert evaluate(expr, context()) == "10-6.0-true-z"


def test_training_output_path_is_computed_from_the_definition():
    assert evaluate(get("Steps.train.OutputDataConfig.S3OutputPath"), context()) == \
        "s3://bucket/stepflow/pipe/e1/train/results"


def test_processing_output_is_found_by_its_output_name():
    expr = get("Steps.prep.ProcessingOutputConfig.Outputs['train'].S3Output.S3Uri")
    assert evaluate(expr, context()) == "s3://b/e1/tr"
    assert evaluate(get("Steps.prep.ProcessingOutputConfig.Outputs[1].S3Output.S3Uri"), context()) == "s3://b/te"


def test_condition_outcome_property():
    assert evaluate(get("Steps.check.Outcome"), context(outcomes={"check": False})) is False
    with pytest.raises(ExpressionError, match="condition 'check' has not been evaluated yet"):
        evaluate(get("Steps.check.Outcome"), context())


def test_a_property_the_definition_does_not_set_is_not_read_into_the_definition():
    with pytest.raises(ExpressionError, match="only properties the definition sets"):
        evaluate(get("Steps.train.OutputDataConfig.KmsKeyId"), context())


# -- properties the step's job reports: read from the description of its latest job -------

JOB_URI = "s3://bucket/stepflow/pipe/e1/prep/jobs/1.json"
DESCRIPTION = {"ProcessingJobName": "e1-prep-1", "ProcessingJobStatus": "Completed",
               "ProcessingJobArn": "arn:aws:sagemaker:us-east-1:000000000000:processing-job/e1-prep-1",
               "ProcessingOutputConfig": {"Outputs": [{"OutputName": "train", "S3Output": {"S3Uri": "s3://b/e1/tr"}}]}}


def job_context(documents=None, jobs=None) -> Context:
    return Context(parameters={}, execution={"PipelineExecutionId": "e1"}, steps=STEPS,
                   documents=documents or {}, jobs={"prep": JOB_URI} if jobs is None else jobs)


def test_a_job_property_is_read_from_the_description_of_the_steps_job():
    ctx = job_context({JOB_URI: DESCRIPTION})
    assert evaluate(get("Steps.prep.ProcessingJobStatus"), ctx) == "Completed"
    assert evaluate(join("/", get("Steps.prep.ProcessingJobName"), "x"), ctx) == "e1-prep-1/x"
    # What the definition sets is still read from the definition (evaluated), never the job's copy.
    assert evaluate(get("Steps.prep.ProcessingOutputConfig.Outputs['train'].S3Output.S3Uri"), ctx) == "s3://b/e1/tr"


def test_a_job_property_asks_for_the_description_as_a_document_with_the_others():
    expr = join(" ", get("Steps.prep.ProcessingJobArn"), json_get("a", "Result"))
    with pytest.raises(DocumentsNeeded) as info:
        evaluate(expr, job_context())
    assert info.value.uris == tuple(sorted((JOB_URI, results_uri("a"))))


def test_a_job_property_without_a_description_says_why():
    with pytest.raises(ExpressionError, match=r"ProcessingJobStatus is a property the job of step 'prep' reports, "
                                              "and this execution has no description of that job"):
        evaluate(get("Steps.prep.ProcessingJobStatus"), job_context(jobs={}))
    with pytest.raises(ExpressionError, match="cannot read the description of the job of step 'prep': NoSuchKey"):
        evaluate(get("Steps.prep.ProcessingJobStatus"), job_context({JOB_URI: UnreadableDocument("NoSuchKey")}))


def test_a_job_property_the_description_lacks_names_what_the_job_reports():
    with pytest.raises(ExpressionError) as info:
        evaluate(get("Steps.prep.FailureReason"), job_context({JOB_URI: DESCRIPTION}))
    message = str(info.value)
    assert "FailureReason is not in the description of the step's job" in message
    assert "its job reports: ProcessingJobArn, ProcessingJobName, ProcessingJobStatus" in message
    assert JOB_URI in message


def test_execution_variable_not_set_by_the_backend():
    with pytest.raises(ExpressionError, match="'PipelineArn' is not available in this execution"):
        evaluate(get("Execution.PipelineArn"), context())


DOC = {"Result": {"rmse": 4.5, "scores": [{"name": "a", "v": 1}, {"name": "b", "v": 2}], "ok": True},
       "Exception": None}


@pytest.mark.parametrize("path, value", [
    ("Result", DOC["Result"]), ("Result['rmse']", 4.5), ('Result["rmse"]', 4.5), ("Result.rmse", 4.5),
    ("Result['scores'][1]['v']", 2), ("Result.scores[0].name", "a"), ("Result['scores'][-1]['name']", "b"),
    ("Exception", None),
])
def test_json_get_path_dialect(path, value):
    assert evaluate(json_get("evaluate", path), context({results_uri("evaluate"): DOC})) == value


def test_json_get_lists_every_missing_document_at_once():
    expr = join(" ", json_get("a", "Result"), json_get("b", "Result['x']"), json_get("a", "Result['y']"))
    with pytest.raises(DocumentsNeeded) as info:
        evaluate(expr, context())
    assert info.value.uris == (results_uri("a"), results_uri("b"))


def test_json_get_from_an_unreadable_document_fails_with_its_reason():
    docs = {results_uri("a"): UnreadableDocument("no such object")}
    with pytest.raises(ExpressionError, match=r"cannot read .*/a/results/results.json: no such object"):
        evaluate(json_get("a", "Result"), context(docs))


@pytest.mark.parametrize("path, fragment", [
    ("Result['mse']", "Result['mse'] does not exist; the keys there are: 'rmse', 'scores', 'ok'"),
    ("Result['scores'][5]", "index [5] is out of range (the list has 2 items)"),
    ("Result['rmse']['x']", "Result['rmse'] is a number (4.5), so it has no key 'x'"),
    ("Result[0]", "Result is an object, not a list"),
])
def test_json_get_errors_name_the_missing_part(path, fragment):
    with pytest.raises(ExpressionError) as info:
        evaluate(json_get("e", path), context({results_uri("e"): DOC}))
    assert fragment in str(info.value)
    assert results_uri("e") in str(info.value)


@pytest.mark.parametrize("path", ["Result", "Result['rmse']", "Result[0]"])
def test_json_get_on_a_result_that_was_not_serializable_says_so(path):
    doc = {"Result": None, "Exception": "The function return (<object>) is not JSON serializable."}
    with pytest.raises(ExpressionError, match=r"return value is not available as JSON: The function "
                                              r"return \(<object>\) is not JSON serializable"):
        evaluate(json_get("e", path), context({results_uri("e"): doc}))


def test_json_get_of_a_null_result_is_null():
    assert evaluate(json_get("e", "Result"), context({results_uri("e"): {"Result": None, "Exception": None}})) is None


def test_resolve_walks_structures():
    value = {"a": [get("Parameters.Epochs"), {"b": join("", "x", get("Parameters.Name"))}], "c": 1}
    assert resolve(value, context()) == {"a": [10, {"b": "xx"}], "c": 1}


# -- conditions -----------------------------------------------------------------------------


def cond(kind, left, right):
    return {"Type": kind, "LeftValue": left, "RightValue": right}


@pytest.mark.parametrize("condition_, expected", [
    (cond("Equals", 1, 1.0), True), (cond("Equals", "a", "b"), False), (cond("Equals", True, True), True),
    (cond("GreaterThan", 2, 1), True), (cond("GreaterThan", 1, 1), False),
    (cond("GreaterThanOrEqualTo", 1, 1), True), (cond("LessThan", 1, 2.5), True),
    (cond("LessThanOrEqualTo", 3, 2), False), (cond("LessThan", "a", "b"), True),
    ({"Type": "In", "QueryValue": "b", "Values": ["a", "b"]}, True),
    ({"Type": "In", "QueryValue": 3, "Values": [1, 2]}, False),
    ({"Type": "Not", "Condition": cond("Equals", 1, 2)}, True),
    ({"Type": "Or", "Conditions": [cond("Equals", 1, 2), cond("Equals", 2, 2)]}, True),
    ({"Type": "Or", "Conditions": [cond("Equals", 1, 2), cond("Equals", 2, 3)]}, False),
])
def test_each_condition_type(condition_, expected):
    assert evaluate_conditions([condition_], context()) is expected


def test_condition_list_is_anded():
    assert evaluate_conditions([cond("Equals", 1, 1), cond("Equals", 1, 1)], context()) is True
    assert evaluate_conditions([cond("Equals", 1, 1), cond("Equals", 1, 2)], context()) is False
    assert evaluate_conditions([], context()) is True


def test_conditions_with_expressions_and_documents():
    docs = {results_uri("e"): DOC}
    assert evaluate_conditions([cond("LessThanOrEqualTo", json_get("e", "Result['rmse']"), get("Parameters.Rate"))],
                               context(docs)) is True
    with pytest.raises(DocumentsNeeded) as info:
        evaluate_conditions([{"Type": "Not", "Condition": cond("Equals", json_get("x"), 1)},
                             cond("Equals", json_get("y"), 1)], context())
    assert info.value.uris == (results_uri("x"), results_uri("y"))


@pytest.mark.parametrize("condition_, fragment", [
    (cond("GreaterThan", "6", 5), "cannot order String '6' against Integer '5'"),
    (cond("LessThan", True, 1), "cannot order Boolean 'true' against Integer '1'"),
    (cond("Equals", "1", 1), "cannot compare String '1' with Integer '1'"),
])
def test_mismatched_types_fail_instead_of_silently_choosing_a_branch(condition_, fragment):
    with pytest.raises(ExpressionError, match=fragment):
        evaluate_conditions([condition_], context())


# -- container arguments ---------------------------------------------------------------------


def test_container_arguments_of_the_reference_train_step():
    plan = Plan.from_definition(reference_definition())
    state = new_execution(plan, execution_id="exec-7", pipeline_name="spec-ref-pipeline",
                          parameters={"Epochs": "12", "UseGpu": "True"}, now=T0)
    args = resolve_container_arguments(plan, "train", execution_context(plan, state, {}, T0))
    base = "s3://sagemaker-us-east-1-123456789012/spec-ref-pipeline"
    assert args[args.index("--pipeline_execution_id") + 1] == "exec-7"
    refs = args[args.index("--property_references") + 1: args.index("--serialize_output_to_json")]
    assert refs == ["Execution.PipelineExecutionId", "exec-7",
                    "Steps.preprocess.OutputDataConfig.S3OutputPath", f"{base}/exec-7/preprocess/results",
                    "Parameters.Epochs", "12", "Parameters.UseGpu", "true",
                    "Execution.PipelineExecutionId", "exec-7"]
    assert all(isinstance(a, str) for a in args)


def test_container_arguments_include_execution_times():
    plan = Plan.from_definition(definition(training("t", extra_args=(get("Execution.StartDateTime"),
                                                                     get("Execution.CurrentDateTime")))))
    state = new_execution(plan, execution_id="e", pipeline_name="p", parameters={}, now=T0)
    later = T0.replace(second=5, microsecond=123456)
    args = resolve_container_arguments(plan, "t", execution_context(plan, state, {}, later))
    assert args[-2:] == ["2024-05-01T12:00:00.000Z", "2024-05-01T12:00:05.123Z"]


def test_container_arguments_only_exist_for_container_steps():
    plan = Plan.from_definition(reference_definition())
    state = new_execution(plan, execution_id="e", pipeline_name="p", parameters={}, now=T0)
    with pytest.raises(ValueError, match="Condition step; it has no container arguments"):
        resolve_container_arguments(plan, "check-rmse", execution_context(plan, state, {}, T0))
