"""Retry in place and selective execution (engine.rerun): what runs again, what is reused."""

from __future__ import annotations

import pytest

from stepflow.engine import retry, select
from stepflow.engine.state import ExecutionState
from stepflow.errors import ValidationError

from .helpers import Driver, condition, definition, json_get, output_path, training

CHAIN = definition(
    training("prep"),
    training("train", depends_on=("prep",), extra_args=("--property_references",
                                                        "Steps.prep.OutputDataConfig.S3OutputPath",
                                                        output_path("prep"))),
    training("report", depends_on=("train",)),
)


def _failed_at_train() -> Driver:
    d = Driver(CHAIN)
    d.tick()
    d.succeed("prep")
    d.tick()
    d.fail("train")
    d.tick()
    assert d.state.status == "Failed" and d.status("report") == "Pending"
    return d


def test_retry_reruns_only_what_did_not_succeed_with_fresh_attempt_numbers():
    d = _failed_at_train()
    d.state = retry(d.plan, d.state, d.now)
    assert d.state.status == "Executing" and d.state.failure_reason is None
    assert d.statuses() == {"prep": "Succeeded", "train": "Pending", "report": "Pending"}
    decision = d.tick()
    assert [(l.step, l.attempt) for l in decision.launches] == [("train", 2)]
    d.succeed("train")
    d.tick()
    d.succeed("report")
    assert d.tick().status == "Succeeded"
    assert [a.status for a in d.state.steps["train"].attempts] == ["Failed", "Succeeded"]
    assert len(d.state.steps["prep"].attempts) == 1  # never run again


def test_retry_survives_the_state_round_trip_and_refuses_what_is_not_failed_or_stopped():
    d = _failed_at_train()
    retried = retry(d.plan, d.state, d.now)
    assert ExecutionState.from_json(retried.to_json()) == retried
    with pytest.raises(ValidationError, match="only a Failed or Stopped execution can be retried"):
        retry(d.plan, retried, d.now)


def test_retried_condition_rederives_its_branches():
    spec = definition(
        training("evaluate"),
        condition("check", [{"Type": "GreaterThanOrEqualTo", "LeftValue": json_get("evaluate", "Result"),
                             "RightValue": 1}],
                  if_steps=[training("ship")], else_steps=[training("retrain")]),
    )
    doc = "s3://bucket/stepflow/pipe/e1/evaluate/results/results.json"
    d = Driver(spec, documents={doc: {"Result": 2, "Exception": None}})
    d.tick()
    d.succeed("evaluate")
    d.tick()
    d.fail("ship")
    d.tick()
    assert d.state.status == "Failed" and d.status("retrain") == "Skipped"
    d.state = retry(d.plan, d.state, d.now)
    decision = d.tick()
    assert [l.step for l in decision.launches] == ["ship"]
    assert d.status("retrain") == "Skipped" and d.status("check") == "Succeeded"


def test_selective_execution_runs_the_selected_steps_reading_the_sources_results():
    source = Driver(CHAIN, execution_id="e1")
    for step in ("prep", "train", "report"):
        source.tick()
        source.succeed(step)
    assert source.tick().status == "Succeeded"

    d = Driver(CHAIN, execution_id="e2")
    d.state = select(d.plan, d.state, source.state, ["train"])
    assert d.statuses() == {"prep": "Succeeded", "train": "Pending", "report": "Skipped"}
    assert d.state.steps["prep"].reused_from == "e1"
    decision = d.tick()
    assert [l.step for l in decision.launches] == ["train"]
    arguments = decision.launches[0].container_arguments
    # prep's output path is the source execution's, its own id is the new one
    assert arguments[arguments.index("Steps.prep.OutputDataConfig.S3OutputPath") + 1] == \
        "s3://bucket/stepflow/pipe/e1/prep/results"
    assert arguments[arguments.index("--pipeline_execution_id") + 1] == "e2"
    d.succeed("train")
    assert d.tick().status == "Succeeded"


def test_selective_execution_needs_the_unselected_dependencies_to_have_succeeded():
    source = _failed_at_train()
    d = Driver(CHAIN, execution_id="e2")
    with pytest.raises(ValidationError, match=r"step 'report' needs 'train', which is not selected and did "
                                              r"not succeed in source execution e1 \(it is Failed\)"):
        select(d.plan, d.state, source.state, ["report"])
    with pytest.raises(ValidationError, match="'nope' is not a step of the pipeline"):
        select(d.plan, d.state, source.state, ["nope"])
    state = select(d.plan, d.state, source.state, ["train", "report"])
    assert {n: s.status for n, s in state.steps.items()} == {"prep": "Succeeded", "train": "Pending",
                                                            "report": "Pending"}
