"""``stepflow.workflow.triggers``: SageMaker's schedules, recorded with the pipeline and
mapped to our five-field schedule trigger."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from croniter import croniter

from stepflow import layout
from stepflow.errors import BackendError, ValidationError
from stepflow.session import Session
from stepflow.workflow.function_step import step
from stepflow.workflow.parameters import ParameterInteger, ParameterString
from stepflow.workflow.pipeline import Pipeline
from stepflow.workflow.triggers import PipelineSchedule


@pytest.mark.parametrize("schedule,expression,cron", [
    (PipelineSchedule(cron="0 9 ? * MON-FRI *"), "cron(0 9 ? * MON-FRI *)", "0 9 * * MON-FRI"),
    # EventBridge numbers days 1-7 from Sunday; cron 0-6.
    (PipelineSchedule(cron="30 6 ? * 2-6 *"), "cron(30 6 ? * 2-6 *)", "30 6 * * 1-5"),
    (PipelineSchedule(cron="0 0 1 * ? *"), "cron(0 0 1 * ? *)", "0 0 1 * *"),
    (PipelineSchedule(rate=(5, "minutes")), "rate(5 minutes)", "*/5 * * * *"),
    (PipelineSchedule(rate=(1, "hour")), "rate(1 hour)", "0 * * * *"),
    (PipelineSchedule(rate=(2, "days")), "rate(2 days)", "0 0 */2 * *"),
    (PipelineSchedule(at=datetime(2026, 12, 24, 18, 0, tzinfo=timezone(timedelta(hours=2)))),
     "at(2026-12-24T16:00:00)", None),
    (PipelineSchedule(at=datetime(2026, 12, 24, 18, 0)), "at(2026-12-24T18:00:00)", None),
])
def test_expressions_and_their_cron(schedule, expression, cron):
    assert schedule.resolve_schedule_expression() == expression
    assert schedule.cron_schedule() == cron


def test_a_translated_cron_fires_when_eventbridge_would():
    # Mondays to Fridays at 09:00: from Saturday 2026-12-05, the next is Monday the 7th.
    cron = PipelineSchedule(cron="0 9 ? * 2-6 *").cron_schedule()
    after = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
    assert croniter(cron, after).get_next(datetime) == datetime(2026, 12, 7, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize("schedule,error,match", [
    (PipelineSchedule(cron="0 9 * *"), ValidationError, "has 4 fields"),
    (PipelineSchedule(cron="0 9 ? * MON 2027"), ValidationError, "limited to year 2027"),
    (PipelineSchedule(rate=(5, "weeks")), ValidationError, "minute"),
    (PipelineSchedule(rate=(5, "minutes"), cron="0 9 ? * * *"), TypeError, "Too many types"),
    (PipelineSchedule(), ValueError, "No schedule type specified"),
    (PipelineSchedule(rate="5 minutes"), TypeError, "rate="),  # type: ignore[arg-type]
])
def test_bad_schedules_say_what_to_write(schedule, error, match):
    with pytest.raises(error, match=match):
        schedule.cron_schedule()


@pytest.fixture
def pipeline(clean_env):
    clean_env.setenv("AWS_REGION", "eu-west-1")

    @step
    def refresh(days: int):
        return days

    days = ParameterInteger("Days", default_value=7)
    return Pipeline(name="nightly", parameters=[days], steps=[refresh(days)],
                    sagemaker_session=Session())


def test_put_describe_delete(pipeline):
    with pytest.raises(RuntimeError, match="does not exist"):
        pipeline.put_triggers([PipelineSchedule(cron="0 2 ? * * *")])
    pipeline.upsert()
    start = datetime(2026, 12, 1, tzinfo=UTC)
    arns = pipeline.put_triggers([
        PipelineSchedule(cron="0 2 ? * * *", start_date=start),
        PipelineSchedule(name="weekly", rate=(7, "days"), enabled=False),
    ], role_arn="arn:aws:iam::111122223333:role/scheduler")
    assert arns == ["arn:aws:scheduler:eu-west-1:000000000000:schedule/default/nightly",
                    "arn:aws:scheduler:eu-west-1:000000000000:schedule/default/weekly"]
    assert pipeline.describe_trigger("nightly") == {
        "Schedule_Arn": "arn:aws:scheduler:eu-west-1:000000000000:schedule/default/nightly",
        "Schedule_Expression": "cron(0 2 ? * * *)",
        "Schedule_State": "ENABLED",
        "Schedule_Start_Date": "2026-12-01T00:00:00Z",
        "Schedule_Role": "arn:aws:iam::111122223333:role/scheduler",
        "Cron": "0 2 * * *",
    }
    assert pipeline.describe_trigger("weekly")["Schedule_State"] == "DISABLED"

    # Recorded with the pipeline: another session on the same store reads them.
    again = Pipeline(name="nightly", sagemaker_session=Session())
    assert again.describe_trigger("weekly")["Cron"] == "0 0 */7 * *"
    stored = json.loads(pipeline.session.store.get_bytes(
        layout.in_pipeline("nightly", layout.triggers_key())))
    assert sorted(stored) == ["nightly", "weekly"]

    pipeline.delete_triggers(["weekly", "never-created"])
    with pytest.raises(BackendError, match="no trigger named 'weekly'; its triggers: nightly"):
        pipeline.describe_trigger("weekly")


def test_scheduled_pipelines_need_parameter_defaults(clean_env):
    @step
    def use(bucket: str):
        return bucket

    bucket = ParameterString("Bucket")
    pipeline = Pipeline(name="nodefault", parameters=[bucket], steps=[use(bucket)],
                        sagemaker_session=Session())
    pipeline.upsert()
    with pytest.raises(ValueError, match=r"don't have defaults \['Bucket'\]"):
        pipeline.put_triggers([PipelineSchedule(rate=(1, "hour"))])
    with pytest.raises(TypeError, match="Unsupported TriggerType: str"):
        pipeline.put_triggers(["daily"])
