"""ExecutionState JSON: exact round trip, stable key order, clear errors on bad input."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from stepflow.engine import ExecutionState, Plan, new_execution
from stepflow.errors import DeserializationError

from .helpers import T0, Driver, definition, reference_definition, training


def mid_run_state() -> ExecutionState:
    driver = Driver(definition(training("a", max_retry=2), training("b"), training("c", depends_on=("a",))),
                    parameters={}, parallelism=2)
    driver.tick()
    driver.advance(1.000001)
    driver.fail("a", kind="Infrastructure", reason="killed by SIGKILL")
    driver.succeed("b")
    driver.tick()
    return driver.state


def test_round_trip_is_exact():
    state = mid_run_state()
    again = ExecutionState.from_json(state.to_json())
    assert again == state
    assert again.to_json() == state.to_json()
    assert again.steps["a"].attempts[0].ended_at == T0 + timedelta(seconds=1.000001)


def test_key_order_is_fixed_and_camel_case():
    data = json.loads(mid_run_state().to_json())
    assert list(data) == ["version", "executionId", "pipelineName", "status", "startedAt", "endedAt",
                          "failureReason", "stopRequested", "parallelism", "pipelineArn", "executionArn",
                          "parameters", "steps"]
    assert [s["name"] for s in data["steps"]] == ["a", "b", "c"]
    assert list(data["steps"][0]) == ["name", "type", "status", "startedAt", "endedAt", "conditionOutcome",
                                      "failureReason", "skipReason", "nextAttemptAt", "reusedFrom", "attempts"]
    assert data["steps"][0]["attempts"][0]["failureKind"] == "Infrastructure"
    assert data["startedAt"] == "2024-05-01T12:00:00.000000Z"


def test_typed_parameters_survive_the_round_trip():
    plan = Plan.from_definition(reference_definition())
    state = new_execution(plan, execution_id="e", pipeline_name="p", parameters={"UseGpu": "yes"}, now=T0)
    again = ExecutionState.from_json(state.to_json())
    assert again.parameters == {"InputDataUri": "s3://my-data/raw.csv", "RmseThreshold": 6.0, "Epochs": 10,
                                "UseGpu": True}
    assert type(again.parameters["RmseThreshold"]) is float


def test_times_in_other_zones_are_stored_in_utc():
    plan = Plan.from_definition(definition(training("a")))
    paris = datetime(2024, 5, 1, 14, 0, tzinfo=timezone(timedelta(hours=2)))
    state = new_execution(plan, execution_id="e", pipeline_name="p", parameters={}, now=paris)
    assert json.loads(state.to_json())["startedAt"] == "2024-05-01T12:00:00.000000Z"


def test_naive_times_are_refused():
    plan = Plan.from_definition(definition(training("a")))
    with pytest.raises(ValueError, match="timezone-aware"):
        new_execution(plan, execution_id="e", pipeline_name="p", parameters={}, now=datetime(2024, 1, 1))


@pytest.mark.parametrize("mutate, fragment", [
    (lambda d: d.pop("steps"), "missing key 'steps'"),
    (lambda d: d.update(status="Running"), "status 'Running' is not one of Executing"),
    (lambda d: d.update(version=2), "version 2 is not 1"),
    (lambda d: d.update(startedAt="yesterday"), "expected an RFC 3339 UTC time"),
    (lambda d: d["steps"][0]["attempts"][0].update(number="1"), "attempt number has the wrong type"),
])
def test_invalid_state_documents_are_refused_with_what_is_wrong(mutate, fragment):
    data = json.loads(mid_run_state().to_json())
    mutate(data)
    with pytest.raises(DeserializationError) as info:
        ExecutionState.from_json(json.dumps(data))
    assert fragment in str(info.value)


def test_not_json_at_all():
    with pytest.raises(DeserializationError, match="not JSON"):
        ExecutionState.from_json("{oops")
