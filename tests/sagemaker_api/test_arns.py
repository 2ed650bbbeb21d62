"""``stepflow.arns``: SageMaker's ARN shapes written, both shapes read."""

from __future__ import annotations

import pytest

from stepflow import arns
from stepflow.errors import ValidationError


def test_written_in_sagemakers_shape_with_the_placeholder_account():
    assert arns.pipeline_arn("churn", region="eu-west-1") == (
        "arn:aws:sagemaker:eu-west-1:000000000000:pipeline/churn")
    assert arns.execution_arn("churn", "20261201t010000-abc123", region="eu-west-1",
                              account="123456789012") == (
        "arn:aws:sagemaker:eu-west-1:123456789012:pipeline/churn/execution/20261201t010000-abc123")


@pytest.mark.parametrize("text,expected", [
    ("arn:aws:sagemaker:us-east-1:000000000000:pipeline/churn",
     arns.PipelineArn("churn", None, "us-east-1", "000000000000")),
    ("arn:aws:sagemaker:us-east-1:123456789012:pipeline/churn/execution/x1y2",
     arns.PipelineArn("churn", "x1y2", "us-east-1", "123456789012")),
    ("arn:aws-cn:sagemaker:cn-north-1:123456789012:pipeline/p/execution/e",
     arns.PipelineArn("p", "e", "cn-north-1", "123456789012")),
    # Recorded by stores written before the SageMaker shape.
    ("stepflow:local:pipeline/churn", arns.PipelineArn("churn")),
    ("stepflow:local:pipeline/churn/execution/20261125t013000-3fa2c1",
     arns.PipelineArn("churn", "20261125t013000-3fa2c1")),
    ("stepflow:pipeline/churn/execution/e1", arns.PipelineArn("churn", "e1")),
])
def test_parse_reads_both_shapes(text, expected):
    assert arns.parse(text) == expected


@pytest.mark.parametrize("text", [
    "churn", "arn:aws:s3:::bucket/key", "arn:aws:sagemaker:us-east-1:1:training-job/x",
    "arn:aws:sagemaker:us-east-1:1:pipeline/a/b",
])
def test_parse_rejects_other_text(text):
    with pytest.raises(ValidationError, match="not a pipeline or pipeline execution ARN"):
        arns.parse(text)


def test_parse_execution_needs_an_execution():
    with pytest.raises(ValidationError, match="is a pipeline ARN"):
        arns.parse_execution("arn:aws:sagemaker:us-east-1:000000000000:pipeline/churn")


def test_execution_arn_under_a_legacy_pipeline_arn_is_in_the_new_shape():
    assert arns.execution_arn_of("stepflow:local:pipeline/churn", "e1", region="us-west-2") == (
        "arn:aws:sagemaker:us-west-2:000000000000:pipeline/churn/execution/e1")
    assert arns.execution_arn_of("arn:aws:sagemaker:eu-west-1:123456789012:pipeline/churn", "e1",
                                 region="us-west-2") == (
        "arn:aws:sagemaker:eu-west-1:123456789012:pipeline/churn/execution/e1")
