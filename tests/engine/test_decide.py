"""decide + apply: the execution semantics, one rule per test."""

from __future__ import annotations

from datetime import timedelta

import pytest

from stepflow.engine import (
    AttemptFailed,
    AttemptRunning,
    AttemptStarted,
    AttemptStopping,
    AttemptSucceeded,
    ConditionEvaluated,
    ExecutionCompleted,
    ExecutionState,
    FailStepReached,
    Plan,
    StepEvaluationFailed,
    StepSkipped,
    StepStopped,
    StopRequested,
    TransitionError,
    UnreadableDocument,
    decide,
    new_execution,
)
from stepflow.errors import ValidationError

from .helpers import (
    ROOT,
    T0,
    Driver,
    condition,
    definition,
    fail,
    get,
    join,
    json_get,
    launched,
    reference_definition,
    results_uri,
    training,
)


def rmse_below(threshold: float, step: str = "e") -> dict:
    return {"Type": "LessThanOrEqualTo", "LeftValue": json_get(step, "Result['rmse']"), "RightValue": threshold}


# -- dependencies and parallelism ------------------------------------------------------------


def test_a_step_starts_only_when_all_its_dependencies_succeeded():
    driver = Driver(definition(training("a"), training("b"), training("c", depends_on=("a", "b"))))
    assert launched(driver.tick()) == ["a", "b"]
    driver.succeed("a")
    assert launched(driver.tick()) == []
    driver.succeed("b")
    decision = driver.tick()
    assert [(l.step, l.attempt, l.step_type) for l in decision.launches] == [("c", 1, "Training")]
    assert decision.launches[0].container_arguments == ("--pipeline_step_name", "c", "--pipeline_execution_id", "e1")
    driver.succeed("c")
    final = driver.tick()
    assert final.status == "Succeeded" and final.events == (ExecutionCompleted("Succeeded"),)
    assert driver.state.status == "Succeeded" and driver.state.ended_at == T0


def test_attempt_lifecycle_statuses():
    driver = Driver(definition(training("a")))
    driver.tick()
    assert driver.status("a") == "Starting"
    driver.report(AttemptRunning("a", 1))
    assert driver.status("a") == "Executing"
    assert driver.state.steps["a"].attempts[0].status == "Executing"
    driver.succeed("a")
    assert driver.status("a") == "Succeeded"


def test_parallelism_limits_running_attempts_in_plan_order():
    driver = Driver(definition(*(training(f"s{i}") for i in range(5))), parallelism=2)
    assert launched(driver.tick()) == ["s0", "s1"]
    assert launched(driver.tick()) == []
    driver.succeed("s1")
    assert launched(driver.tick()) == ["s2"]


def test_parallelism_argument_overrides_the_stored_limit():
    driver = Driver(definition(*(training(f"s{i}") for i in range(5))), parallelism=1)
    assert launched(decide(driver.plan, driver.state, {}, driver.now, parallelism=3)) == ["s0", "s1", "s2"]
    with pytest.raises(ValueError, match="parallelism must be >= 1"):
        decide(driver.plan, driver.state, {}, driver.now, parallelism=0)


def test_processing_steps_launch_with_their_app_specification_arguments():
    processing = {"Name": "p", "Type": "Processing", "Arguments": {"AppSpecification": {
        "ImageUri": "img", "ContainerArguments": ["--id", get("Execution.PipelineExecutionId"), 3]}}}
    decision = Driver(definition(processing)).decide()
    assert decision.launches[0].step_type == "Processing"
    assert decision.launches[0].container_arguments == ("--id", "e1", "3")


def test_a_recorded_attempt_is_never_launched_again_even_after_reload():
    driver = Driver(definition(training("a"), training("b")))
    first = driver.decide()
    assert launched(first) == ["a", "b"]
    assert driver.decide() == first  # nothing recorded yet: same decision
    driver.report(AttemptStarted("a", 1))  # crashed after recording only 'a'
    reloaded = ExecutionState.from_json(driver.state.to_json())
    decision = decide(driver.plan, reloaded, {}, driver.now)
    assert launched(decision) == ["b"]


# -- failures ---------------------------------------------------------------------------------


def test_a_failed_step_stops_new_starts_and_fails_the_execution_once_running_steps_finish():
    driver = Driver(definition(training("a"), training("b"), training("c", depends_on=("a",)), training("d")),
                    parallelism=2)
    assert launched(driver.tick()) == ["a", "b"]
    driver.fail("a", reason="ValueError: boom")
    decision = driver.tick()
    assert decision.launches == () and decision.status is None  # b still runs, d must not start
    assert driver.state.status == "Executing"
    assert driver.state.failure_reason == "Step 'a' failed: ValueError: boom"
    driver.succeed("b")
    decision = driver.tick()
    assert decision.status == "Failed" and decision.failure_reason == "Step 'a' failed: ValueError: boom"
    assert driver.statuses() == {"a": "Failed", "b": "Succeeded", "c": "Pending", "d": "Pending"}
    assert driver.state.steps["a"].failure_reason == "ValueError: boom"
    assert driver.state.steps["a"].attempts[0].exit_code == 1


def test_unresolvable_job_arguments_fail_the_step_before_launch():
    driver = Driver(definition(training("a", extra_args=(get("Execution.PipelineArn"),)), training("b")))
    decision = driver.tick()
    assert launched(decision) == []  # 'a' failed first, so 'b' is not started either
    assert isinstance(decision.events[0], StepEvaluationFailed)
    assert "cannot resolve its job arguments" in decision.events[0].reason
    assert "'PipelineArn' is not available" in decision.events[0].reason
    assert decision.status == "Failed"


def test_arns_are_available_when_the_backend_sets_them():
    plan = Plan.from_definition(definition(training("a", extra_args=(get("Execution.PipelineExecutionArn"),))))
    state = new_execution(plan, execution_id="e1", pipeline_name="p", parameters={}, now=T0,
                          execution_arn="arn:stepflow:local:execution/p/e1")
    assert decide(plan, state, {}, T0).launches[0].container_arguments[-1] == "arn:stepflow:local:execution/p/e1"


# -- conditions and skipping -------------------------------------------------------------------


def branching(threshold=5.0):
    return definition(
        training("e"),
        condition("c", [rmse_below(threshold)], if_steps=[training("good")],
                  else_steps=[training("bad"), training("bad2", depends_on=("bad",))]),
        training("after_bad", depends_on=("bad2",)),
        training("after_good", depends_on=("good",)),
    )


def test_condition_needs_its_document_then_takes_the_if_branch():
    driver = Driver(branching())
    driver.tick()
    driver.succeed("e")
    decision = driver.tick()
    assert decision.documents_needed == (results_uri("e"),) and decision.events == () and decision.launches == ()
    driver.documents[results_uri("e")] = {"Result": {"rmse": 4.0}, "Exception": None}
    decision = driver.tick()
    assert decision.conditions == {"c": True}
    assert decision.skipped == ("bad", "bad2", "after_bad")
    assert launched(decision) == ["good"]
    reasons = {e.step: e.reason for e in decision.events if isinstance(e, StepSkipped)}
    assert reasons["bad"] == "condition 'c' evaluated to true, so its ElseSteps do not run"
    assert reasons["after_bad"] == "it depends on 'bad2', which was skipped"
    assert driver.state.steps["c"].condition_outcome is True and driver.status("c") == "Succeeded"
    driver.succeed("good")
    assert launched(driver.tick()) == ["after_good"]
    driver.succeed("after_good")
    assert driver.tick().status == "Succeeded"


def test_a_condition_on_a_job_property_reads_the_description_of_the_jobs_latest_attempt():
    prep = {"Name": "prep", "Type": "Processing", "Arguments": {"AppSpecification": {"ImageUri": "img"}}}
    check = condition("check", [{"Type": "Equals", "LeftValue": get("Steps.prep.ProcessingJobStatus"),
                                 "RightValue": "Completed"}],
                      [training("use", extra_args=("--job", get("Steps.prep.ProcessingJobName")))],
                      [fail("stop", "not completed")])
    driver = Driver(definition(prep, check))
    driver.tick()
    driver.succeed("prep")
    uri = f"{ROOT}/e1/prep/jobs/1.json"
    jobs = {"prep": uri}
    decision = decide(driver.plan, driver.state, driver.documents, driver.now, jobs=jobs)
    assert decision.documents_needed == (uri,) and not decision.events and not decision.launches
    driver.documents[uri] = {"ProcessingJobName": "e1-prep-1", "ProcessingJobStatus": "Completed"}
    decision = decide(driver.plan, driver.state, driver.documents, driver.now, jobs=jobs)
    assert decision.conditions == {"check": True} and decision.skipped == ("stop",)
    assert decision.launches[0].container_arguments[-2:] == ("--job", "e1-prep-1")
    driver.documents[uri] = {"ProcessingJobName": "e1-prep-1", "ProcessingJobStatus": "Failed"}
    assert decide(driver.plan, driver.state, driver.documents, driver.now, jobs=jobs).fail_steps == {
        "stop": "not completed"}


def test_condition_takes_the_else_branch():
    driver = Driver(branching(), documents={results_uri("e"): {"Result": {"rmse": 9.0}, "Exception": None}})
    driver.tick()
    driver.succeed("e")
    decision = driver.tick()
    assert decision.conditions == {"c": False}
    assert decision.skipped == ("good", "after_good")
    assert launched(decision) == ["bad"]


def test_chained_conditions_resolve_in_one_decision():
    inner = condition("inner", [{"Type": "Equals", "LeftValue": get("Parameters.Mode"), "RightValue": "a"}],
                      if_steps=[training("x")], else_steps=[training("y")])
    outer = condition("outer", [{"Type": "Equals", "LeftValue": 1, "RightValue": 1}], if_steps=[inner],
                      else_steps=[training("z")])
    driver = Driver(definition(outer, parameters=[{"Name": "Mode", "Type": "String", "DefaultValue": "b"}]))
    decision = driver.tick()
    assert decision.conditions == {"outer": True, "inner": False}
    assert set(decision.skipped) == {"z", "x"}
    assert launched(decision) == ["y"]


def test_a_skipped_condition_skips_its_whole_subtree():
    inner = condition("inner", [{"Type": "Equals", "LeftValue": 1, "RightValue": 1}], if_steps=[training("x")])
    outer = condition("outer", [{"Type": "Equals", "LeftValue": 1, "RightValue": 2}], if_steps=[inner])
    decision = Driver(definition(outer)).tick()
    assert decision.skipped == ("inner", "x") and decision.status == "Succeeded"


def test_a_condition_that_cannot_be_evaluated_fails_the_execution():
    driver = Driver(branching(), documents={results_uri("e"): UnreadableDocument("NoSuchKey")})
    driver.tick()
    driver.succeed("e")
    decision = driver.tick()
    assert decision.status == "Failed"
    assert driver.status("c") == "Failed"
    assert "NoSuchKey" in driver.state.steps["c"].failure_reason
    assert decision.failure_reason.startswith("Step 'c' failed: JsonGet: cannot read")


def test_condition_steps_are_not_evaluated_after_a_failure():
    driver = Driver(definition(training("a"), training("b"),
                               condition("c", [{"Type": "Equals", "LeftValue": 1, "RightValue": 1}],
                                         depends_on=("b",), if_steps=[training("x")])))
    driver.tick()
    driver.fail("a")
    driver.succeed("b")
    decision = driver.tick()
    assert decision.conditions == {} and decision.status == "Failed"
    assert driver.status("c") == "Pending"


# -- fail steps ----------------------------------------------------------------------------------


def test_fail_step_fails_the_execution_with_its_evaluated_message():
    message = join(" ", "rmse", json_get("e", "Result['rmse']"), "above", get("Parameters.Max"))
    driver = Driver(definition(training("e"), condition("c", [rmse_below(5.0)], else_steps=[fail("stop", message)]),
                               parameters=[{"Name": "Max", "Type": "Float", "DefaultValue": 5.0}]),
                    documents={results_uri("e"): {"Result": {"rmse": 7.25}, "Exception": None}})
    driver.tick()
    driver.succeed("e")
    decision = driver.tick()
    assert decision.fail_steps == {"stop": "rmse 7.25 above 5.0"}
    assert decision.status == "Failed" and decision.failure_reason == "rmse 7.25 above 5.0"
    assert driver.status("stop") == "Failed"


def test_fail_step_without_message_still_says_what_happened():
    decision = Driver(definition(fail("f"))).tick()
    assert decision.failure_reason == "Fail step 'f' was reached"


def test_fail_step_waits_for_running_steps():
    driver = Driver(definition(training("slow"), fail("f", "no")))
    decision = driver.tick()
    assert decision.fail_steps == {"f": "no"} and launched(decision) == []  # failure first: nothing new
    assert decision.status == "Failed"  # nothing was running


def test_fail_step_reached_while_another_step_runs():
    driver = Driver(definition(training("slow"), training("quick"), fail("f", "no", depends_on=("quick",))))
    driver.tick()
    driver.succeed("quick")
    decision = driver.tick()
    assert decision.fail_steps == {"f": "no"} and decision.status is None
    driver.succeed("slow")
    assert driver.tick().status == "Failed"


# -- retries ------------------------------------------------------------------------------------


def test_user_failures_are_never_retried():
    driver = Driver(definition(training("a", max_retry=3, policies=[
        {"ExceptionType": ["Step.SERVICE_FAULT"], "MaxAttempts": 5}])))
    driver.tick()
    driver.fail("a", kind="User")
    assert driver.status("a") == "Failed"
    assert driver.tick().status == "Failed"


@pytest.mark.parametrize("given, expected_attempts", [(None, 3), ({"Retries": 0}, 1)])
def test_retry_strategy_read_from_an_integer_parameter(given, expected_attempts):
    step = training("a")
    step["Arguments"]["RetryStrategy"] = {"MaximumRetryAttempts": {"Get": "Parameters.Retries"}}
    spec = definition(step, parameters=[{"Name": "Retries", "Type": "Integer", "DefaultValue": 2}])
    driver = Driver(spec, parameters=given)
    driver.tick()
    while driver.status("a") != "Failed":
        driver.fail("a", kind="Infrastructure", reason="killed")
        driver.tick()
    assert len(driver.state.steps["a"].attempts) == expected_attempts


def test_retry_strategy_parameter_must_be_an_integer_parameter():
    step = training("a")
    step["Arguments"]["RetryStrategy"] = {"MaximumRetryAttempts": {"Get": "Parameters.Retries"}}
    with pytest.raises(ValidationError, match="reads parameter 'Retries', which is a String; it must be an "
                                              "Integer parameter"):
        Plan.from_definition(definition(step, parameters=[{"Name": "Retries", "Type": "String"}]))


def test_retry_strategy_retries_infrastructure_failures_immediately():
    driver = Driver(definition(training("a", max_retry=2)))
    driver.tick()
    for attempt in (1, 2):
        driver.fail("a", kind="Infrastructure", reason="killed")
        assert driver.status("a") == "Starting"
        assert driver.state.steps["a"].attempts[-1].retried_by == "RetryStrategy"
        decision = driver.tick()
        assert [(l.step, l.attempt) for l in decision.retries] == [("a", attempt + 1)]
    driver.fail("a", kind="Infrastructure", reason="killed")
    assert driver.status("a") == "Failed"
    assert driver.tick().failure_reason == "Step 'a' failed: killed"
    assert len(driver.state.steps["a"].attempts) == 3


def test_retry_policies_back_off_from_the_failure_time():
    driver = Driver(definition(training("a", policies=[
        {"ExceptionType": ["SageMaker.CAPACITY_ERROR"], "IntervalSeconds": 10, "BackoffRate": 3.0,
         "MaxAttempts": 2}])))
    driver.tick()
    driver.fail("a", kind="Infrastructure")
    decision = driver.tick()
    assert decision.launches == () and decision.wake_at == T0 + timedelta(seconds=10)
    assert driver.state.steps["a"].next_attempt_at == T0 + timedelta(seconds=10)
    driver.advance(9.999)
    assert driver.tick().launches == ()
    driver.advance(0.001)
    assert [(l.step, l.attempt) for l in driver.tick().launches] == [("a", 2)]
    driver.fail("a", kind="Infrastructure")
    assert driver.tick().wake_at == driver.now + timedelta(seconds=30)
    driver.advance(30)
    assert launched(driver.tick()) == ["a"]
    driver.fail("a", kind="Infrastructure")
    assert driver.tick().status == "Failed"
    assert [a.retried_by for a in driver.state.steps["a"].attempts] == ["RetryPolicies[0]", "RetryPolicies[0]", None]


def test_reference_train_step_allows_strategy_then_each_policy_budget():
    driver = Driver(reference_definition())
    driver.tick()
    driver.succeed("preprocess")
    driver.tick()
    for _ in range(10):
        if driver.status("train") == "Failed":
            break
        driver.fail("train", kind="Infrastructure", reason="InternalServerError")
        if driver.state.steps["train"].next_attempt_at:
            driver.now = driver.state.steps["train"].next_attempt_at
        driver.tick()
    assert [a.retried_by for a in driver.state.steps["train"].attempts] == [
        "RetryStrategy", "RetryPolicies[0]", "RetryPolicies[0]", "RetryPolicies[0]",
        "RetryPolicies[1]", "RetryPolicies[1]", None]


def test_expire_after_min_bounds_policy_retries_in_time():
    driver = Driver(definition(training("a", policies=[
        {"ExceptionType": ["Step.THROTTLING"], "IntervalSeconds": 60, "BackoffRate": 1.0, "ExpireAfterMin": 2}])))
    driver.tick()
    retries = 0
    while driver.status("a") != "Failed":
        driver.advance(1)
        driver.fail("a", kind="Infrastructure")
        if driver.state.steps["a"].next_attempt_at:
            retries += 1
            driver.now = driver.state.steps["a"].next_attempt_at
            driver.tick()
    assert retries == 1  # the second retry would start at 2:02 after the first start, past 2 minutes


def test_pending_retries_continue_after_another_step_failed():
    driver = Driver(definition(training("a", max_retry=1), training("b")))
    driver.tick()
    driver.fail("b")
    driver.fail("a", kind="Infrastructure")
    decision = driver.tick()
    assert [(l.step, l.attempt) for l in decision.launches] == [("a", 2)]
    driver.succeed("a")
    assert driver.tick().status == "Failed"


# -- stop ------------------------------------------------------------------------------------------


def test_stop_signals_each_running_attempt_once_then_stops():
    driver = Driver(definition(training("a"), training("b"), training("c", depends_on=("a",))))
    driver.tick()
    driver.report(StopRequested())
    assert driver.state.status == "Stopping"
    decision = driver.tick()
    assert [(s.step, s.attempt) for s in decision.stops] == [("a", 1), ("b", 1)]
    assert decision.launches == () and decision.status is None
    driver.report(AttemptStopping("a", 1))
    assert driver.status("a") == "Stopping"
    assert [(s.step, s.attempt) for s in driver.tick().stops] == [("b", 1)]
    driver.report(AttemptStopping("b", 1))
    driver.stopped("a")
    driver.succeed("b")  # finished before the signal landed
    decision = driver.tick()
    assert decision.status == "Stopped" and decision.launches == ()
    assert driver.statuses() == {"a": "Stopped", "b": "Succeeded", "c": "Pending"}


def test_stop_cancels_a_pending_retry():
    driver = Driver(definition(training("a", policies=[
        {"ExceptionType": ["Step.SERVICE_FAULT"], "IntervalSeconds": 60, "MaxAttempts": 3}])))
    driver.tick()
    driver.fail("a", kind="Infrastructure")
    driver.report(StopRequested())
    decision = driver.tick()
    assert decision.events == (StepStopped("a"), ExecutionCompleted("Stopped"))
    assert driver.status("a") == "Stopped" and driver.state.status == "Stopped"


def test_a_failure_while_stopping_is_not_retried():
    driver = Driver(definition(training("a", max_retry=3)))
    driver.tick()
    driver.report(StopRequested())
    driver.fail("a", kind="Infrastructure", reason="terminated")
    assert driver.status("a") == "Failed"
    assert driver.tick().status == "Stopped"


def test_stop_is_idempotent_and_ignored_after_the_end():
    driver = Driver(definition(training("a")))
    driver.tick()
    driver.succeed("a")
    driver.tick()
    driver.report(StopRequested())
    assert driver.state.status == "Succeeded" and not driver.state.stop_requested
    assert driver.decide().status == "Succeeded"


# -- the reducer refuses what does not fit ------------------------------------------------------------


def test_repeated_reports_are_harmless_and_contradictions_are_refused():
    driver = Driver(definition(training("a"), training("b", depends_on=("a",))))
    driver.tick()
    driver.report(AttemptStarted("a", 1))  # repeated record: no change
    assert len(driver.state.steps["a"].attempts) == 1
    driver.succeed("a")
    before = driver.state
    driver.report(AttemptSucceeded("a", 1))
    assert driver.state == before
    with pytest.raises(TransitionError, match="already ended as Succeeded"):
        driver.report(AttemptFailed("a", 1, "late", "User"))


@pytest.mark.parametrize("event, fragment", [
    (AttemptStarted("b", 1), "'b' cannot start: a has not succeeded"),
    (AttemptStarted("a", 3), "attempt 3 is out of sequence"),
    (AttemptSucceeded("b", 1), "has no attempt 1 recorded"),
    (AttemptSucceeded("zz", 1), "has no step 'zz'"),
    (AttemptFailed("a", 1, "x", "Oops"), "failure kind must be 'User' or 'Infrastructure'"),
    (ConditionEvaluated("a", True), "expected a Pending Condition step"),
    (FailStepReached("b", "x"), "expected a Pending Fail step"),
    (ExecutionCompleted("Succeeded"), "cannot complete while a still run"),
])
def test_events_that_do_not_fit_are_refused(event, fragment):
    driver = Driver(definition(training("a"), training("b", depends_on=("a",))))
    driver.tick()
    with pytest.raises(TransitionError, match=fragment):
        driver.report(event)


def test_a_step_in_a_branch_not_taken_cannot_be_started():
    driver = Driver(definition(condition("c", [{"Type": "Equals", "LeftValue": 1, "RightValue": 2}],
                                         if_steps=[training("x")], else_steps=[training("y")])))
    driver.report(ConditionEvaluated("c", False))
    with pytest.raises(TransitionError, match="has not taken the branch"):
        driver.report(AttemptStarted("x", 1))


def test_events_after_the_end_are_refused_except_repeats():
    driver = Driver(definition(training("a")))
    driver.tick()
    driver.succeed("a")
    driver.tick()
    driver.report(AttemptSucceeded("a", 1))
    with pytest.raises(TransitionError, match="already Succeeded"):
        driver.report(AttemptFailed("a", 1, "x", "User"))


def test_a_state_from_another_definition_is_refused():
    driver = Driver(definition(training("a")))
    other = Plan.from_definition(definition(training("b")))
    with pytest.raises(TransitionError, match="started from another definition"):
        decide(other, driver.state, {}, T0)


# -- the reference definition, both ways ------------------------------------------------------------


def run_reference(rmse: float) -> Driver:
    driver = Driver(reference_definition(), execution_id="exec-1")
    uri = "s3://sagemaker-us-east-1-123456789012/spec-ref-pipeline/exec-1/evaluate/results/results.json"
    for _ in range(10):
        decision = driver.tick()
        if decision.status:
            break
        if decision.documents_needed:
            assert decision.documents_needed == (uri,)
            driver.documents[uri] = {"Result": {"rmse": rmse}, "Exception": None}
        for launch in decision.launches:
            driver.succeed(launch.step)
    return driver


def test_reference_definition_good_model_is_registered():
    driver = run_reference(4.2)
    assert driver.state.status == "Succeeded"
    assert driver.statuses() == {"preprocess": "Succeeded", "train": "Succeeded", "evaluate": "Succeeded",
                                 "check-rmse": "Succeeded", "register": "Succeeded", "rmse-too-high": "Skipped"}
    assert driver.state.steps["check-rmse"].condition_outcome is True


def test_reference_definition_bad_model_fails_with_the_message():
    driver = run_reference(7.5)
    assert driver.state.status == "Failed"
    assert driver.state.failure_reason == "RMSE 7.5 exceeds 6.0"
    assert driver.statuses()["register"] == "Skipped"
    assert driver.statuses()["rmse-too-high"] == "Failed"
