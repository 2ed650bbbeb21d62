"""A pipeline's schedules, recorded with it: what ``Pipeline.put_triggers``,
``describe_trigger`` and ``delete_triggers`` read and write.

One JSON document per pipeline (:func:`stepflow.layout.triggers_key`), trigger name →
SageMaker's ``describe_trigger`` fields plus ``Cron``, the five-field cron of our schedule
trigger (None for a one-time ``at``). Any process opening the store sees them, as it sees
the pipeline record.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from stepflow import arns, layout
from stepflow.errors import BackendError
from stepflow.storage import NotFound
from stepflow.timefmt import seconds, utcnow
from stepflow.workflow.triggers import PipelineSchedule, validate_default_parameters_for_schedules

if TYPE_CHECKING:
    from stepflow.workflow.pipeline import Pipeline


def _key(pipeline: Pipeline) -> str:
    return layout.in_pipeline(pipeline.name, layout.triggers_key())


def _read(pipeline: Pipeline) -> dict[str, dict[str, Any]]:
    try:
        return dict(json.loads(pipeline.session.store.get_bytes(_key(pipeline))))
    except NotFound:
        return {}


def _write(pipeline: Pipeline, records: dict[str, dict[str, Any]]) -> None:
    pipeline.session.store.put_bytes(_key(pipeline), json.dumps(records, indent=1, sort_keys=True).encode())


def put_triggers(pipeline: Pipeline, triggers: Sequence[Any], role_arn: str | None) -> list[str]:
    if not triggers:
        raise TypeError("No Triggers provided. Please specify at least one to setup pipeline triggers.")
    for trigger in triggers:
        if not isinstance(trigger, PipelineSchedule):
            raise TypeError(f"Unsupported TriggerType: {type(trigger).__name__}")
    try:
        pipeline.describe()
    except BackendError as exc:
        if exc.reason != "PipelineNotFound":
            raise
        raise RuntimeError(
            f"Cannot create triggers for pipeline {pipeline.name} that does not exist. Please "
            "create the pipeline before assigning triggers to it (pipeline.upsert()).") from None
    validate_default_parameters_for_schedules(pipeline.parameters)
    session = pipeline.session
    role = role_arn or session.get_caller_identity_arn()
    records = _read(pipeline)
    created = []
    for trigger in triggers:
        name = trigger.resolve_trigger_name(pipeline.name)
        arn = arns.schedule_arn(name, region=session.region)
        records[name] = {
            "Schedule_Arn": arn,
            "Schedule_Expression": trigger.resolve_schedule_expression(),
            "Schedule_State": trigger.resolve_trigger_state(),
            "Schedule_Start_Date": seconds(trigger.start_date or utcnow()),
            "Schedule_Role": role,
            "Cron": trigger.cron_schedule(),
        }
        created.append(arn)
    _write(pipeline, records)
    return sorted(set(created))


def describe_trigger(pipeline: Pipeline, trigger_name: str) -> dict[str, Any]:
    if not trigger_name:
        raise TypeError("No trigger name provided. Please specify at least one to describe "
                        "pipeline triggers.")
    records = _read(pipeline)
    if trigger_name not in records:
        raise BackendError(
            f"Pipeline '{pipeline.name}' has no trigger named {trigger_name!r}; its triggers: "
            f"{', '.join(sorted(records)) or 'none'}. Create one with put_triggers().",
            reason="TriggerNotFound")
    return dict(records[trigger_name])


def delete_triggers(pipeline: Pipeline, trigger_names: Sequence[str]) -> None:
    """Missing names are skipped, as the SDK does (a warning there, nothing here)."""
    records = _read(pipeline)
    kept = {name: record for name, record in records.items() if name not in set(trigger_names)}
    if kept != records:
        _write(pipeline, kept)
