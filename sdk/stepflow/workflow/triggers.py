"""``stepflow.workflow.triggers``: SageMaker's pipeline schedules.

``PipelineSchedule(cron=..., rate=..., at=...)`` is the SDK's EventBridge schedule. Here a
schedule is recorded with the pipeline (``Pipeline.put_triggers``) and maps to our own
schedule trigger, a five-field cron (the ``Pipeline`` resource's
``spec.trigger.schedule``): :meth:`PipelineSchedule.cron_schedule` does the translation and
``describe_trigger`` shows it next to SageMaker's fields.

EventBridge's cron has six fields (minute hour day-of-month month day-of-week year), ``?``
for "any", and numbers days of the week 1-7 from Sunday; the translation drops a ``*`` year,
turns ``?`` into ``*`` and renumbers days 0-6. ``rate(n unit)`` becomes a ``*/n`` cron,
which fires at the same instants when ``n`` divides the unit's range. ``at(...)`` fires once
and has no cron form.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from stepflow.errors import ValidationError

__all__ = ["ENABLED_TRIGGER_STATE", "DISABLED_TRIGGER_STATE", "PipelineSchedule", "Trigger",
           "validate_default_parameters_for_schedules"]

ENABLED_TRIGGER_STATE = "ENABLED"
DISABLED_TRIGGER_STATE = "DISABLED"

_RATE_UNITS = {"minute": "*/{n} * * * *", "hour": "0 */{n} * * *", "day": "0 0 */{n} * *"}
_DOW_NUMBER = re.compile(r"(?<![/\d])\d+")  # a day's number, not a step (``1/2``)


@dataclass
class Trigger:
    """A pipeline trigger: ``name`` defaults to the pipeline's name."""

    name: str | None = None
    enabled: bool = True

    def resolve_trigger_name(self, pipeline_name: str) -> str:
        return self.name or pipeline_name

    def resolve_trigger_state(self) -> str:
        return ENABLED_TRIGGER_STATE if self.enabled else DISABLED_TRIGGER_STATE


@dataclass
class PipelineSchedule(Trigger):
    """A schedule: exactly one of ``at`` (a datetime, UTC when naive), ``rate``
    (``(5, "minutes")``) or ``cron`` (EventBridge's six fields)."""

    start_date: datetime | None = None
    at: datetime | None = None
    rate: tuple[int, str] | None = None
    cron: str | None = None

    def resolve_schedule_expression(self) -> str:
        """EventBridge's expression: ``at(2026-12-01T09:00:00)``, ``rate(5 minutes)``,
        ``cron(0 9 ? * MON-FRI *)``."""
        given = [x for x in (self.at, self.rate, self.cron) if x is not None]
        if len(given) > 1:
            raise TypeError("Too many types specified for PipelineSchedule. Please specify a "
                            "single type in [at, rate, or cron].")
        if self.at is not None:
            if not isinstance(self.at, datetime):
                raise TypeError("Incorrect type specified for at= schedule.")
            moment = self.at.astimezone(UTC) if self.at.tzinfo else self.at
            return f"at({moment.strftime('%Y-%m-%dT%H:%M:%S')})"
        if self.rate is not None:
            if not isinstance(self.rate, tuple):
                raise TypeError("Incorrect type specified for rate= schedule.")
            value, unit = self.rate
            return f"rate({value} {unit})"
        if self.cron is not None:
            if not isinstance(self.cron, str):
                raise TypeError("Incorrect type specified for cron= schedule.")
            return f"cron({self.cron})"
        raise ValueError("No schedule type specified. Please specify a single type in "
                         "[at, rate, or cron].")

    def cron_schedule(self) -> str | None:
        """The five-field cron of our schedule trigger; None for a one-time ``at``."""
        self.resolve_schedule_expression()  # exactly one kind, of the right type
        if self.at is not None:
            return None
        if self.rate is not None:
            return _rate_to_cron(*self.rate)
        return _eventbridge_cron_to_cron(str(self.cron))


def _rate_to_cron(value: Any, unit: str) -> str:
    base = unit.rstrip("s")
    if not isinstance(value, int) or value < 1 or base not in _RATE_UNITS:
        raise ValidationError(
            f"PipelineSchedule rate={(value, unit)!r}: give a positive whole number and one "
            "of minute(s), hour(s), day(s), e.g. rate=(5, 'minutes').", reason="InvalidSchedule")
    return _RATE_UNITS[base].format(n=value).replace("*/1 ", "* ")


def _eventbridge_cron_to_cron(cron: str) -> str:
    fields = cron.split()
    if len(fields) != 6:
        raise ValidationError(
            f"PipelineSchedule cron={cron!r} has {len(fields)} fields; EventBridge's cron has "
            "six: minutes hours day-of-month month day-of-week year, e.g. '0 9 ? * MON-FRI *'.",
            reason="InvalidSchedule")
    minute, hour, dom, month, dow, year = fields
    if year not in ("*", "?"):
        raise ValidationError(
            f"PipelineSchedule cron={cron!r}: a schedule limited to year {year} has no "
            "five-field cron form; use '*' for the year.", reason="InvalidSchedule")
    dow = _DOW_NUMBER.sub(lambda m: str((int(m.group()) - 1) % 7), dow)
    result = " ".join("*" if f == "?" else f for f in (minute, hour, dom, month, dow))
    from croniter import croniter

    if not croniter.is_valid(result):
        raise ValidationError(
            f"PipelineSchedule cron={cron!r} is not a cron expression stepflow can run "
            f"(translated: {result!r}).", reason="InvalidSchedule")
    return result


def validate_default_parameters_for_schedules(parameters: Sequence[Any] | None) -> None:
    """A scheduled execution cannot pass parameters: each needs a default (the SDK's rule)."""
    missing = [p.name for p in parameters or () if getattr(p, "default_value", None) is None]
    if missing:
        raise ValueError(
            "When using pipeline triggers, please specify default values for all Pipeline "
            "Parameters. Currently, they are not overridable at runtime as inputs to a "
            f"scheduled pipeline execution. The current parameters don't have defaults {missing}.")
