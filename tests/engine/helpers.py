"""Small hand-written definitions and a driver that plays the orchestrator's part."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from stepflow.engine import (
    AttemptFailed,
    AttemptStarted,
    AttemptStopped,
    AttemptSucceeded,
    Decision,
    ExecutionState,
    Plan,
    apply,
    apply_all,
    decide,
    new_execution,
)

T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
ROOT = "s3://bucket/stepflow/pipe"
REFERENCE = Path("/work/shared/reference_definition.json")


def reference_definition() -> dict[str, Any]:
    return json.loads(REFERENCE.read_text())


def get(reference: str) -> dict[str, Any]:
    return {"Get": reference}


def join(on: str, *values: Any) -> dict[str, Any]:
    return {"Std:Join": {"On": on, "Values": list(values)}}


def output_path(step: str) -> dict[str, Any]:
    return get(f"Steps.{step}.OutputDataConfig.S3OutputPath")


def json_get(step: str, path: str = "Result") -> dict[str, Any]:
    """What the SDK emits when a DelayedReturn is used as a value.

    See docs/SAGEMAKER-COMPATIBILITY.md, "A step output used as a value".
    """
    return {"Std:JsonGet": {"S3Uri": join("/", output_path(step), "results.json"), "Path": path}}


def results_uri(step: str, execution_id: str = "e1") -> str:
    return f"{ROOT}/{execution_id}/{step}/results/results.json"


def training(name: str, depends_on: tuple[str, ...] = (), extra_args: tuple[Any, ...] = (),
             max_retry: int | None = None, policies: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    arguments: dict[str, Any] = {
        "OutputDataConfig": {"S3OutputPath": join("/", ROOT, get("Execution.PipelineExecutionId"), name, "results")},
        "AlgorithmSpecification": {"ContainerArguments": [
            "--pipeline_step_name", name, "--pipeline_execution_id", get("Execution.PipelineExecutionId"),
            *extra_args]},
    }
    if max_retry is not None:
        arguments["RetryStrategy"] = {"MaximumRetryAttempts": max_retry}
    step: dict[str, Any] = {"Name": name, "Type": "Training", "Arguments": arguments}
    if depends_on:
        step["DependsOn"] = list(depends_on)
    if policies is not None:
        step["RetryPolicies"] = policies
    return step


def condition(name: str, conditions: list[dict[str, Any]], if_steps: list[dict[str, Any]] = (),
              else_steps: list[dict[str, Any]] = (), depends_on: tuple[str, ...] = ()) -> dict[str, Any]:
    step = {"Name": name, "Type": "Condition",
            "Arguments": {"Conditions": conditions, "IfSteps": list(if_steps), "ElseSteps": list(else_steps)}}
    if depends_on:
        step["DependsOn"] = list(depends_on)
    return step


def fail(name: str, message: Any = "", depends_on: tuple[str, ...] = ()) -> dict[str, Any]:
    step = {"Name": name, "Type": "Fail", "Arguments": {"ErrorMessage": message}}
    if depends_on:
        step["DependsOn"] = list(depends_on)
    return step


def definition(*steps: dict[str, Any], parameters: list[dict[str, Any]] = ()) -> dict[str, Any]:
    return {"Version": "2020-12-01", "Metadata": {}, "Parameters": list(parameters),
            "PipelineExperimentConfig": None, "Steps": list(steps)}


class Driver:
    """Plays the orchestrator: decides, records launches write-ahead, reports outcomes."""

    def __init__(self, definition: dict[str, Any], parameters: dict[str, Any] | None = None,
                 parallelism: int | None = None, documents: dict[str, Any] | None = None,
                 execution_id: str = "e1") -> None:
        self.plan = Plan.from_definition(definition)
        self.now = T0
        self.state: ExecutionState = new_execution(self.plan, execution_id=execution_id, pipeline_name="pipe",
                                                   parameters=parameters, now=self.now,
                                                   parallelism=parallelism)
        self.documents: dict[str, Any] = dict(documents or {})

    def decide(self) -> Decision:
        return decide(self.plan, self.state, self.documents, self.now)

    def tick(self) -> Decision:
        """One orchestrator round: apply the decision's events, record its launches."""
        decision = self.decide()
        self.state = apply_all(self.plan, self.state,
                               [*decision.events, *(AttemptStarted(l.step, l.attempt) for l in decision.launches)],
                               self.now)
        return decision

    def report(self, event: Any) -> None:
        self.state = apply(self.plan, self.state, event, self.now)

    def attempt(self, step: str) -> int:
        return len(self.state.steps[step].attempts)

    def succeed(self, *steps: str) -> None:
        for step in steps:
            self.report(AttemptSucceeded(step, self.attempt(step)))

    def fail(self, step: str, kind: str = "User", reason: str = "ValueError: boom") -> None:
        self.report(AttemptFailed(step, self.attempt(step), reason, kind, 1 if kind == "User" else 3))

    def stopped(self, step: str) -> None:
        self.report(AttemptStopped(step, self.attempt(step)))

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)

    def status(self, step: str) -> str:
        return self.state.steps[step].status

    def statuses(self) -> dict[str, str]:
        return {name: s.status for name, s in self.state.steps.items()}


def launched(decision: Decision) -> list[str]:
    return [launch.step for launch in decision.launches]
