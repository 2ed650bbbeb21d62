"""``spec`` parsing: the limits the CRD cannot express, checked where every front end reads."""

from __future__ import annotations

import pytest

from stepflow.errors import ConfigurationError
from stepflow.gitops.spec import PipelineSpec
from stepflow.k8s_names import LABEL_LIMIT, bounded, label_value, object_name


def _spec(**source_and_trigger) -> dict:
    source = {"url": "https://git.example/ml/churn.git", "ref": {"branch": "main"}}
    source.update(source_and_trigger.pop("source", {}))
    return {"source": source, "module": "pipelines/churn.py", **source_and_trigger}


@pytest.mark.parametrize("interval", ["1ms", "500ms", "0.5s"])
def test_an_interval_below_one_second_is_refused(interval):
    with pytest.raises(ConfigurationError, match="shorter than the minimum of 1s") as info:
        PipelineSpec.from_manifest(_spec(source={"interval": interval}), name="p")
    assert info.value.reason == "InvalidInterval" and info.value.kind == "User"


def test_one_second_and_longer_intervals_are_taken():
    assert PipelineSpec.from_manifest(_spec(source={"interval": "1s"}), name="p").interval == 1.0
    assert PipelineSpec.from_manifest(_spec(source={"interval": "1m30s"}), name="p").interval == 90.0


@pytest.mark.parametrize("schedule", ["*/10 * * * * *", "0 3 * * * 2027", "* * * *"])
def test_a_cron_without_exactly_five_fields_is_refused(schedule):
    with pytest.raises(ConfigurationError, match="no seconds field") as info:
        PipelineSpec.from_manifest(_spec(trigger={"schedule": schedule}), name="p")
    assert info.value.reason == "InvalidSchedule"


@pytest.mark.parametrize("schedule", ["0 3 * * *", "@daily", "*/5 * * * 1-5"])
def test_five_field_crons_and_macros_are_taken(schedule):
    assert PipelineSpec.from_manifest(_spec(trigger={"schedule": schedule}), name="p").trigger.schedule == schedule


def test_long_names_are_cut_with_a_hash_and_short_ones_kept():
    assert label_value("churn") == "churn" and object_name("churn-4f1c2ab-3fa2c1") == "churn-4f1c2ab-3fa2c1"
    long_a, long_b = "a" * 100, "a" * 99 + "b"
    assert len(label_value(long_a)) == LABEL_LIMIT and label_value(long_a) != label_value(long_b)
    assert label_value(long_a) == label_value(long_a), "deterministic: creation stays idempotent"
    assert len(object_name("x" * 300)) == 253
    assert not bounded("a" * 54 + "-" * 20, 63).split("-")[0].endswith("-")


def test_sagemaker_backend_and_its_role() -> None:
    role = "arn:aws:iam::123456789012:role/stepflow-pipelines"
    spec = PipelineSpec.from_manifest({**_spec(), "backend": "sagemaker", "sagemaker": {"roleArn": role}},
                                      name="churn")
    assert (spec.backend, spec.role_arn) == ("sagemaker", role)
    assert PipelineSpec.from_manifest(_spec(), name="churn").role_arn is None
    with pytest.raises(ConfigurationError) as caught:
        PipelineSpec.from_manifest({**_spec(), "backend": "sagemaker", "sagemaker": "role"}, name="churn")
    assert caught.value.reason == "InvalidSpec"
