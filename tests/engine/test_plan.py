"""Plan.from_definition: flattening, dependencies, branches, retry settings, validation."""

from __future__ import annotations

import pytest

from stepflow.engine import Branch, Plan
from stepflow.errors import ValidationError

from .helpers import condition, definition, fail, get, json_get, output_path, reference_definition, training


def test_reference_definition_is_flattened_with_inferred_dependencies_and_branches():
    plan = Plan.from_definition(reference_definition())

    assert plan.order == ("preprocess", "train", "evaluate", "check-rmse", "register", "rmse-too-high")
    assert plan.step("train").dependencies == ("preprocess",)
    assert plan.step("evaluate").dependencies == ("train", "preprocess")
    assert plan.step("check-rmse").dependencies == ("evaluate",)
    assert plan.step("register").branch == Branch("check-rmse", True)
    assert plan.step("rmse-too-high").branch == Branch("check-rmse", False)
    assert plan.step("rmse-too-high").type == "Fail"


def test_reference_retry_settings_are_read():
    plan = Plan.from_definition(reference_definition())
    train = plan.step("train").retry
    assert train.max_retry_attempts == 1
    assert [(p.exception_types, p.max_attempts, p.interval_seconds, p.backoff_rate) for p in train.policies] == [
        (("Step.THROTTLING",), 3, 1.0, 2.0), (("SageMaker.CAPACITY_ERROR",), 2, 1.0, 2.0)]
    assert plan.step("check-rmse").retry.max_retry_attempts == 0


def test_references_in_arguments_become_dependencies_without_depends_on():
    plan = Plan.from_definition(definition(
        training("a"),
        training("b", extra_args=("--in", join_of("a"))),
        condition("c", [{"Type": "Equals", "LeftValue": json_get("b", "Result['ok']"), "RightValue": True}]),
    ))
    assert plan.step("b").dependencies == ("a",)
    assert plan.step("c").dependencies == ("b",)


def join_of(step: str) -> dict:
    return {"Std:Join": {"On": "", "Values": [output_path(step)]}}


def test_order_is_topological_with_definition_order_breaking_ties():
    plan = Plan.from_definition(definition(
        training("leaf", depends_on=("mid",)), training("mid", depends_on=("root2", "root1")),
        training("root2"), training("root1")))
    assert plan.order == ("root2", "root1", "mid", "leaf")


def test_branch_steps_wait_for_their_condition_even_nested():
    plan = Plan.from_definition(definition(
        condition("outer", [{"Type": "Equals", "LeftValue": 1, "RightValue": 1}],
                  if_steps=[condition("inner", [{"Type": "Equals", "LeftValue": 1, "RightValue": 2}],
                                      else_steps=[training("deep")])]),
    ))
    assert plan.step("inner").branch == Branch("outer", True)
    assert plan.step("deep").branch == Branch("inner", False)
    assert plan.order == ("outer", "inner", "deep")


@pytest.mark.parametrize("steps, expected", [
    ((training("a"), training("a")), "step name 'a' is used twice, at Steps[0] and at Steps[1]"),
    ((training("a"), condition("c", [], if_steps=[training("a")])),
     "step name 'a' is used twice, at Steps[0] and at Steps[1].Arguments.IfSteps[0]"),
    ((training("a", depends_on=("trian",)), training("train")),
     "depends on step 'trian', which is not in the pipeline (did you mean 'train'?)"),
    ((training("a", extra_args=(output_path("ghost"),)),), "depends on step 'ghost'"),
    ((training("a", depends_on=("a",)),), "step 'a' depends on itself"),
    (({"Name": "m", "Type": "Lambda", "Arguments": {}},), "step type 'Lambda' is not supported"),
    (({"Type": "Training"},), "Steps[0]: every step needs a non-empty string Name"),
])
def test_invalid_definitions_are_refused_with_the_location(steps, expected):
    with pytest.raises(ValidationError) as info:
        Plan.from_definition(definition(*steps))
    assert expected in str(info.value)


def test_cycle_message_spells_out_the_cycle():
    with pytest.raises(ValidationError) as info:
        Plan.from_definition(definition(
            training("start"), training("a", depends_on=("start", "c")), training("b", depends_on=("a",)),
            training("c", depends_on=("b",)), training("after", depends_on=("c",))))
    message = str(info.value)
    assert "cycle: a -> c -> b -> a" in message
    assert "remove one of these dependencies" in message


def test_cycle_through_a_condition_branch_is_detected():
    with pytest.raises(ValidationError, match=r"cycle: c -> x -> c"):
        Plan.from_definition(definition(
            condition("c", [{"Type": "Equals", "LeftValue": json_get("x"), "RightValue": 1}],
                      if_steps=[training("x")])))


@pytest.mark.parametrize("bad, expected", [
    (get("Parameters.Epoch"), "reads parameter 'Epoch', which the pipeline does not declare (did you mean 'Epochs'?)"),
    (get("Execution.TrainingJobName"), "execution variable 'TrainingJobName' is not supported"),
    (get("Steps.a.OutputDataConfig.S3OutputPth"), "property OutputDataConfig.S3OutputPth is not in the step's"),
    (get("Steps.a"), "names a step but no property"),
    (get("Nope.x"), "references start with 'Parameters.', 'Execution.' or 'Steps.<name>.'"),
    ({"Std:Join": {"Values": ["x"]}}, "Std:Join needs"),
    ({"Std:JsonGet": {"S3Uri": "s3://x", "Path": "Result['a"}}, "unterminated string"),
    ({"Std:JsonGet": {"PropertyFile": get("Steps.a.PropertyFiles.f"), "Path": "x"}},
     "the PropertyFile form of JsonGet is not supported"),
])
def test_bad_expressions_are_refused_with_where_they_are(bad, expected):
    with pytest.raises(ValidationError) as info:
        Plan.from_definition(definition(
            training("a"), training("b", depends_on=("a",), extra_args=("--x", bad)),
            parameters=[{"Name": "Epochs", "Type": "Integer", "DefaultValue": 1}]))
    assert expected in str(info.value)
    assert str(info.value).startswith("Steps[1] (b) Arguments.AlgorithmSpecification.ContainerArguments[5]")


def test_condition_property_outcome_is_the_only_condition_property():
    cond = condition("c", [{"Type": "Equals", "LeftValue": 1, "RightValue": 1}])
    plan = Plan.from_definition(definition(cond, training("t", extra_args=(get("Steps.c.Outcome"),))))
    assert plan.step("t").dependencies == ("c",)
    with pytest.raises(ValidationError, match="has only the property 'Outcome'"):
        Plan.from_definition(definition(cond, training("t", extra_args=(get("Steps.c.Status"),))))


@pytest.mark.parametrize("conditions, expected", [
    ([{"Type": "Bigger", "LeftValue": 1, "RightValue": 2}], "unknown condition type 'Bigger'"),
    ([{"Type": "Equals", "LeftValue": 1}], "a Equals condition needs 'RightValue'"),
    ([{"Type": "Not", "Condition": {"Type": "In", "QueryValue": 1}}], "a In condition needs 'Values'"),
    ({"Type": "Equals"}, "Conditions must be a list"),
])
def test_malformed_conditions_are_refused(conditions, expected):
    with pytest.raises(ValidationError, match=expected):
        Plan.from_definition(definition(condition("c", conditions)))


@pytest.mark.parametrize("policy, expected", [
    ({"ExceptionType": ["Step.BOOM"], "MaxAttempts": 1}, "unknown ExceptionType 'Step.BOOM'"),
    ({"ExceptionType": ["Step.THROTTLING"]}, "set MaxAttempts or ExpireAfterMin"),
    ({"ExceptionType": ["Step.THROTTLING"], "MaxAttempts": 1, "BackoffRate": 0.5}, "BackoffRate must be"),
    ({"ExceptionType": [], "MaxAttempts": 1}, "ExceptionType must list at least one"),
])
def test_bad_retry_policies_are_refused(policy, expected):
    with pytest.raises(ValidationError, match=expected):
        Plan.from_definition(definition(training("t", policies=[policy])))


def test_negative_retry_strategy_is_refused():
    with pytest.raises(ValidationError, match="MaximumRetryAttempts must be a whole number >= 0"):
        Plan.from_definition(definition(training("t", max_retry=-1)))


def test_definition_must_have_steps():
    with pytest.raises(ValidationError, match="'Steps' list"):
        Plan.from_definition({"Version": "2020-12-01"})


def test_plan_does_not_alias_the_callers_definition():
    raw = definition(training("a"))
    plan = Plan.from_definition(raw)
    raw["Steps"][0]["Name"] = "changed"
    assert plan.step("a").definition["Name"] == "a"


def test_fail_step_references_are_dependencies():
    plan = Plan.from_definition(definition(training("e"), fail("f", {"Std:Join": {"On": " ", "Values": [
        "rmse", json_get("e", "Result['rmse']")]}})))
    assert plan.step("f").dependencies == ("e",)
