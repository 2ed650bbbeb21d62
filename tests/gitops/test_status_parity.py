"""Both front ends write the same Pipeline ``.status`` from the same execution states.

The operator sends :func:`pipeline_status` as a JSON merge patch (the API server applies it);
``stepflow up`` applies it with :func:`apply_execution`. Each scenario drives the real engine
through a run (succeeded, failed, stopped, a condition's skipped branch, a retried step) and
compares the two results after every state, not only the last.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from stepflow.engine import (
    AttemptFailed,
    AttemptStarted,
    AttemptStopped,
    AttemptSucceeded,
    ExecutionState,
    Plan,
    StopRequested,
    apply,
    apply_all,
    decide,
    new_execution,
)
from stepflow.gitops.execution_status import execution_status, pipeline_status, step_entries, steps_summary
from stepflow.gitops.up_state import PipelineState, apply_execution

T0 = datetime(2026, 11, 25, 1, 2, 3, tzinfo=UTC)
ROOT = "s3://bucket/stepflow/p"


def _training(name: str, *, after: tuple[str, ...] = (), retries: int | None = None) -> dict[str, Any]:
    args: dict[str, Any] = {
        "OutputDataConfig": {"S3OutputPath": {"Std:Join": {"On": "/", "Values": [
            ROOT, {"Get": "Execution.PipelineExecutionId"}, name, "results"]}}},
        "AlgorithmSpecification": {"ContainerArguments": ["--pipeline_step_name", name]}}
    if retries is not None:
        args["RetryStrategy"] = {"MaximumRetryAttempts": retries}
    step: dict[str, Any] = {"Name": name, "Type": "Training", "Arguments": args}
    if after:
        step["DependsOn"] = list(after)
    return step


def _definition(*steps: dict[str, Any]) -> dict[str, Any]:
    return {"Version": "2020-12-01", "Metadata": {}, "Parameters": [], "PipelineExperimentConfig": None,
            "Steps": list(steps)}


def _gate(threshold: float) -> dict[str, Any]:
    value = {"Std:JsonGet": {"S3Uri": {"Std:Join": {"On": "/", "Values": [
        {"Get": "Steps.train.OutputDataConfig.S3OutputPath"}, "results.json"]}}, "Path": "Result"}}
    return {"Name": "gate", "Type": "Condition", "Arguments": {
        "Conditions": [{"Type": "GreaterThanOrEqualTo", "LeftValue": value, "RightValue": threshold}],
        "IfSteps": [_training("register")], "ElseSteps": [{"Name": "too-low", "Type": "Fail",
                                                           "Arguments": {"ErrorMessage": "too low"}}]}}


class _Run:
    """Plays the orchestrator's part over the pure engine, recording every state."""

    def __init__(self, definition: dict[str, Any]) -> None:
        self.plan = Plan.from_definition(definition)
        self.now = T0
        self.state = new_execution(self.plan, execution_id="e1", pipeline_name="p", parameters=None, now=T0)
        self.documents: dict[str, Any] = {f"{ROOT}/e1/train/results/results.json": {"Result": 0.9,
                                                                                     "Exception": None}}
        self.states: list[ExecutionState] = [self.state]

    def _record(self, state: ExecutionState) -> None:
        self.state = state
        self.states.append(state)
        self.now += timedelta(seconds=7)

    def tick(self) -> list[str]:
        decision = decide(self.plan, self.state, self.documents, self.now)
        self._record(apply_all(self.plan, self.state,
                               [*decision.events, *(AttemptStarted(l.step, l.attempt) for l in decision.launches)],
                               self.now))
        return [launch.step for launch in decision.launches]

    def report(self, event: Any) -> None:
        self._record(apply(self.plan, self.state, event, self.now))

    def attempt(self, step: str) -> int:
        return len(self.state.steps[step].attempts)

    def until_over(self, outcome: Any) -> None:
        while not self.state.terminal:
            for step in self.tick():
                self.report(outcome(step, self.attempt(step)))


def _succeeded() -> _Run:
    run = _Run(_definition(_training("prep"), _training("train", after=("prep",)), _gate(0.5)))
    run.until_over(lambda step, n: AttemptSucceeded(step, n))
    return run


def _skipped_else_branch() -> _Run:
    return _succeeded()  # the gate passes: 'too-low' is skipped by the condition


def _failed() -> _Run:
    run = _Run(_definition(_training("prep"), _training("train", after=("prep",))))
    run.until_over(lambda step, n: AttemptFailed(step, n, "ValueError: boom", "User", 1)
                   if step == "train" else AttemptSucceeded(step, n))
    return run


def _retried() -> _Run:
    run = _Run(_definition(_training("flaky", retries=2)))
    run.until_over(lambda step, n: AttemptFailed(step, n, "node lost", "Infrastructure", 3)
                   if n == 1 else AttemptSucceeded(step, n))
    return run


def _stopped() -> _Run:
    run = _Run(_definition(_training("slow"), _training("next", after=("slow",))))
    run.tick()
    run.report(StopRequested())
    run.tick()
    run.report(AttemptStopped("slow", 1))
    run.tick()
    return run


def _merge(target: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """RFC 7386, as the API server applies a merge patch to ``.status``."""
    out = copy.deepcopy(target)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict):
            out[key] = _merge(out.get(key) if isinstance(out.get(key), dict) else {}, value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _result_uri(step: str) -> str:
    return f"{ROOT}/e1/{step}/results"


SCENARIOS = {"succeeded": _succeeded, "skipped-else-branch": _skipped_else_branch, "failed": _failed,
             "retried": _retried, "stopped": _stopped}


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_operator_and_stepflow_up_write_the_same_pipeline_status(scenario):
    run = SCENARIOS[scenario]()
    assert run.state.terminal, f"the {scenario} scenario must end"
    before = {"conditions": [{"type": "Ready", "status": "True"}], "summary": {"revision": "4f1c2ab"}}
    on_resource = copy.deepcopy(before)
    up = PipelineState(name="p", status={**copy.deepcopy(before), "lastExecution": {"name": "e1"}},
                       history=[{"name": "e1", "revision": "main@sha1:4f1c2ab", "definitionDigest": "sha256:d"}])
    for state in run.states:
        owned = pipeline_status("e1", state, step_entries(state, _result_uri), revision="main@sha1:4f1c2ab",
                                definition_digest="sha256:d")
        on_resource = _merge(on_resource, owned)
        apply_execution(up, "e1", owned)
        assert up.status == on_resource, f"{scenario}: the front ends disagree at {state.status}"
    assert up.history[0]["phase"] == run.state.status


def test_steps_count_what_succeeded_or_was_skipped_by_a_condition():
    run = _skipped_else_branch()
    status = execution_status(run.state, _result_uri)
    phases = {s["name"]: s["phase"] for s in status["steps"]}
    assert phases == {"prep": "Succeeded", "train": "Succeeded", "gate": "Succeeded", "register": "Succeeded",
                      "too-low": "Skipped"}
    assert status["summary"]["steps"] == "5/5"
    skipped = next(s for s in status["steps"] if s["name"] == "too-low")
    assert "gate" in skipped["skipReason"] and "failureReason" not in skipped
    assert steps_summary(execution_status(_failed().state, _result_uri)["steps"]) == "1/2"


def test_failed_and_retried_steps_keep_their_reasons_and_attempts():
    failed = execution_status(_failed().state, _result_uri)
    train = next(s for s in failed["steps"] if s["name"] == "train")
    assert (failed["phase"], train["phase"], train["failureReason"]) == ("Failed", "Failed", "ValueError: boom")
    assert "resultUri" not in train
    retried = execution_status(_retried().state, _result_uri)
    flaky = retried["steps"][0]
    assert (retried["phase"], flaky["attempts"], flaky["resultUri"]) == ("Succeeded", 2, _result_uri("flaky"))
    stopped = execution_status(_stopped().state, _result_uri)
    assert stopped["phase"] == "Stopped" and stopped["summary"]["steps"] == "0/2"
