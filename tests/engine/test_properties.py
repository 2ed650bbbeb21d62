"""Property-based tests over random pipelines, played by a random orchestrator.

The orchestrator follows the protocol (apply the decision's events, record launches
before starting them, report outcomes), while hypothesis picks the DAG, the parallelism,
each attempt's outcome, when a stop arrives, and when the orchestrator crashes and
reloads its state from JSON.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from stepflow.engine import (
    AttemptFailed,
    AttemptStarted,
    AttemptStopped,
    AttemptStopping,
    AttemptSucceeded,
    ExecutionState,
    Plan,
    StopRequested,
    UnreadableDocument,
    apply,
    apply_all,
    decide,
    new_execution,
)

from .helpers import T0, condition, definition, fail, json_get, results_uri, training

MAX_ROUNDS = 400


@st.composite
def pipelines(draw: Any) -> dict[str, Any]:
    """Training steps with random DependsOn on earlier steps, conditions with branches
    (possibly nested), and Fail steps; edges only point backwards, so no cycles."""
    names: list[str] = []
    trainings: list[str] = []

    def new_training() -> dict[str, Any]:
        name = f"t{len(names)}"
        deps = draw(st.lists(st.sampled_from(names), max_size=3, unique=True)) if names else []
        names.append(name)
        trainings.append(name)
        policies = draw(st.sampled_from([None, [{"ExceptionType": ["Step.SERVICE_FAULT"], "IntervalSeconds": 5,
                                                 "BackoffRate": 2.0, "MaxAttempts": 2}]]))
        return training(name, depends_on=tuple(deps), max_retry=draw(st.integers(0, 2)), policies=policies)

    def new_item(depth: int) -> dict[str, Any]:
        kind = draw(st.sampled_from(["training"] * 3 + ["condition"] * 2 + ["fail"] if depth < 2 else ["training"]))
        if kind == "training" or not trainings:
            return new_training()
        if kind == "fail":
            name = f"f{len(names)}"
            names.append(name)
            return fail(name, "stop here", depends_on=(draw(st.sampled_from(trainings)),))
        name = f"c{len(names)}"
        names.append(name)
        source = draw(st.sampled_from(trainings))
        cond = {"Type": "Equals", "LeftValue": json_get(source, "Result"), "RightValue": 1}
        if_steps = [new_item(depth + 1) for _ in range(draw(st.integers(0, 2)))]
        else_steps = [new_item(depth + 1) for _ in range(draw(st.integers(0, 2)))]
        return condition(name, [cond], if_steps, else_steps)

    items = [new_item(0) for _ in range(draw(st.integers(1, 7)))]
    return definition(*items)


def check_decision_is_restartable(plan: Plan, state: ExecutionState, documents: dict, now: Any) -> Any:
    decision = decide(plan, state, documents, now)
    reloaded = ExecutionState.from_json(state.to_json())
    assert reloaded == state
    assert decide(plan, reloaded, documents, now) == decision
    assert decide(plan, state, documents, now) == decision
    return decision


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(definition_=pipelines(), parallelism=st.one_of(st.none(), st.integers(1, 4)), data=st.data())
def test_random_pipelines_under_a_random_orchestrator(definition_, parallelism, data):
    plan = Plan.from_definition(definition_)
    now = T0
    state = new_execution(plan, execution_id="e1", pipeline_name="pipe", parameters={}, now=now,
                          parallelism=parallelism)
    documents: dict[str, Any] = {}
    launched: set[tuple[str, int]] = set()
    stop_signalled: set[tuple[str, int]] = set()

    for _ in range(MAX_ROUNDS):
        decision = check_decision_is_restartable(plan, state, documents, now)
        if decision.status is not None:
            state = apply_all(plan, state, decision.events, now)
            break
        if decision.documents_needed:
            for uri in decision.documents_needed:
                documents[uri] = data.draw(st.sampled_from(
                    [{"Result": 0, "Exception": None}, {"Result": 1, "Exception": None}] * 3
                    + [UnreadableDocument("NoSuchKey")]), label=uri)
            continue

        if state.stop_requested:
            assert not decision.launches, "launch after a stop request"
        state = apply_all(plan, state, decision.events, now)
        for launch in decision.launches:
            key = (launch.step, launch.attempt)
            assert key not in launched, f"{key} launched twice"
            assert launch.attempt == len(state.steps[launch.step].attempts) + 1
            for dep in plan.step(launch.step).dependencies:
                assert state.steps[dep].status == "Succeeded", f"{launch.step} launched before {dep} succeeded"
            branch = plan.step(launch.step).branch
            if branch:
                assert state.steps[branch.condition].condition_outcome is branch.when
            if launch.attempt == 1:
                assert not state.stop_requested and state.failure_reason is None, "new step after failure/stop"
            launched.add(key)
            state = apply(plan, state, AttemptStarted(*key), now)
        running = [s for s in state.steps.values() if s.open_attempt]
        if parallelism is not None:
            assert len(running) <= parallelism
        for stop in decision.stops:
            assert (stop.step, stop.attempt) not in stop_signalled, "stop signalled twice"
            stop_signalled.add((stop.step, stop.attempt))
            state = apply(plan, state, AttemptStopping(stop.step, stop.attempt), now)

        if data.draw(st.integers(0, 9), label="crash") == 0:
            state = ExecutionState.from_json(state.to_json())
        if not state.stop_requested and data.draw(st.integers(0, 59), label="stop") == 0:
            state = apply(plan, state, StopRequested(), now)

        now += timedelta(seconds=data.draw(st.integers(0, 3), label="elapsed"))
        if running:
            step = data.draw(st.sampled_from(running), label="finishes")
            key = (step.name, step.open_attempt.number)
            if key in stop_signalled and data.draw(st.booleans(), label="stopped in time"):
                report: Any = AttemptStopped(*key)
            else:
                outcome = data.draw(st.sampled_from(["ok"] * 5 + ["user", "infra", "infra"]), label=f"outcome {key}")
                report = (AttemptSucceeded(*key) if outcome == "ok" else
                         AttemptFailed(*key, "boom", "User" if outcome == "user" else "Infrastructure",
                                       1 if outcome == "user" else 3))
            state = apply(plan, state, report, now)
        elif decision.wake_at is not None:
            now = max(now, decision.wake_at)
        else:
            assert decision.launches or decision.events, "engine idle with nothing running and not finished"
    else:
        raise AssertionError("execution did not terminate")

    assert state.terminal
    event(f"execution {state.status}")
    event(f"steps {len(plan.steps)}")
    if any(len(s.attempts) > 1 for s in state.steps.values()):
        event("some step retried")
    if any(s.status == "Skipped" for s in state.steps.values()):
        event("some step skipped")
    statuses = {name: s.status for name, s in state.steps.items()}
    assert not any(s.open_attempt or s.waiting_for_retry for s in state.steps.values())
    assert not set(statuses.values()) & {"Starting", "Executing", "Stopping"}
    if state.status == "Succeeded":
        assert set(statuses.values()) <= {"Succeeded", "Skipped"} and not state.stop_requested
    elif state.status == "Failed":
        assert "Failed" in statuses.values() and not state.stop_requested
        assert state.failure_reason
    else:
        assert state.status == "Stopped" and state.stop_requested
    for name, step in state.steps.items():
        retry = plan.step(name).retry
        assert len(step.attempts) <= 1 + retry.max_retry_attempts + sum(p.max_attempts or 0 for p in retry.policies)
        if step.status == "Skipped":
            assert not step.attempts
        for attempt in step.attempts:
            for dep in plan.step(name).dependencies:
                assert state.steps[dep].ended_at is not None and state.steps[dep].ended_at <= attempt.started_at
    assert {(n, a.number) for n, s in state.steps.items() for a in s.attempts} == launched
    assert decide(plan, state, documents, now).status == state.status


@settings(max_examples=200, deadline=None)
@given(definition_=pipelines(), data=st.data())
def test_json_round_trip_preserves_any_reachable_state(definition_, data):
    """Drive a run partway with everything succeeding, then compare decisions and JSON."""
    plan = Plan.from_definition(definition_)
    now = T0
    state = new_execution(plan, execution_id="e1", pipeline_name="pipe", parameters={}, now=now)
    documents = {results_uri(name): {"Result": data.draw(st.integers(0, 1)), "Exception": None}
                 for name in plan.steps}
    for _ in range(data.draw(st.integers(0, 12), label="rounds")):
        decision = decide(plan, state, documents, now)
        if decision.status:
            break
        state = apply_all(plan, state, [*decision.events, *(AttemptStarted(l.step, l.attempt)
                                                             for l in decision.launches)], now)
        now += timedelta(microseconds=data.draw(st.integers(0, 10**7)))
        open_steps = [s.name for s in state.steps.values() if s.open_attempt]
        if open_steps:
            name = data.draw(st.sampled_from(open_steps))
            state = apply(plan, state, AttemptSucceeded(name, len(state.steps[name].attempts)), now)
    text = state.to_json()
    reloaded = ExecutionState.from_json(text)
    assert reloaded == state and reloaded.to_json() == text
    assert decide(plan, reloaded, documents, now) == decide(plan, state, documents, now)
