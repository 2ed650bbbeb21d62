"""``stepflow.utils`` and ``stepflow.s3``'s path helpers behave as the SDK's."""

from __future__ import annotations

import re
import time

import pytest

from stepflow.errors import ValidationError
from stepflow.s3 import parse_s3_url, s3_path_join
from stepflow.utils import (
    base_from_name,
    base_name_from_image,
    name_from_base,
    unique_name_from_base,
)
from stepflow.workflow.parameters import ParameterString


@pytest.mark.parametrize("args,kwargs,expected", [
    # The examples of the SDK's docstring.
    (("/foo", "bar/"), {}, "foo/bar"),
    (("foo", "bar"), {"with_end_slash": True}, "foo/bar/"),
    (("s3://", "//foo/", "/bar///baz"), {}, "s3://foo/bar/baz"),
    (("foo", "", None, "bar"), {}, "foo/bar"),
    # What notebooks write.
    (("s3://", "bucket", None, "pipeline", "data"), {}, "s3://bucket/pipeline/data"),
    (("s3://bucket/prefix/", "train.csv"), {}, "s3://bucket/prefix/train.csv"),
    (("s3://",), {}, "s3://"),
    ((), {}, ""),
])
def test_s3_path_join(args, kwargs, expected):
    assert s3_path_join(*args, **kwargs) == expected


def test_parse_s3_url():
    assert parse_s3_url("s3://bucket/a/b.csv") == ("bucket", "a/b.csv")
    assert parse_s3_url("s3://bucket") == ("bucket", "")
    with pytest.raises(ValidationError, match="s3://<bucket>/<key>"):
        parse_s3_url("/local/file.csv")


def test_unique_name_from_base_is_random_and_fits():
    before = int(time.time())
    names = [unique_name_from_base("churn-pipeline") for _ in range(20)]
    suffixes = set()
    for name in names:
        match = re.fullmatch(r"churn-pipeline-(\d+)-([0-9a-f]{4})", name)
        assert match, name
        assert before <= int(match.group(1)) <= int(time.time())
        suffixes.add(match.group(2))
    assert len(suffixes) > 1  # random: 20 equal draws of 16**4 values would be a broken generator
    long = unique_name_from_base("x" * 100, max_length=40)
    assert len(long) == 40 and long.startswith("x" * 24 + "-")


def test_name_from_base_round_trips_through_base_from_name():
    name = name_from_base("training-job")
    assert re.fullmatch(r"training-job-\d{4}-\d{2}-\d{2}-\d{2}-\d{2}-\d{2}-\d{3}", name)
    assert base_from_name(name) == "training-job"
    assert len(name_from_base("y" * 80)) == 63


def test_base_name_from_image():
    image = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"
    assert base_name_from_image(image) == "sagemaker-scikit-learn"
    assert base_name_from_image(ParameterString("Image", default_value="repo/xgb:1")) == "xgb"
    assert base_name_from_image(ParameterString("Image"), "fallback") == "fallback"
