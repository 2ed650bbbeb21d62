"""Pipeline, execution and job ARNs: the one place their format is written and read.

Every backend names pipelines, executions and jobs as SageMaker does, so code and tooling that
parse SageMaker ARNs work unchanged::

    arn:aws:sagemaker:<region>:<account>:pipeline/<name>
    arn:aws:sagemaker:<region>:<account>:pipeline/<name>/execution/<id>
    arn:aws:sagemaker:<region>:<account>:processing-job/<job name>   (training-job/...)

Backends that have no AWS account (local, kubernetes) use :data:`PLACEHOLDER_ACCOUNT`.
SageMaker lower-cases the pipeline name inside its ARNs; we keep the name as written,
because our pipeline names are already lower-case DNS labels when they come from a
``Pipeline`` resource and a name must survive the round trip.

Stores written before this format recorded ``stepflow:local:pipeline/<name>[/execution/<id>]``
(and ``stepflow:pipeline/...`` from ``_PipelineExecution.arn``): :func:`parse` reads those
too, so executions recorded then stay readable.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from stepflow.errors import ValidationError

#: The account in the ARNs of backends that have none: twelve zeros, as in AWS's examples.
PLACEHOLDER_ACCOUNT = "000000000000"

_NAME = r"[^/:\s]+"
_SAGEMAKER = re.compile(
    rf"^arn:(?P<partition>aws[a-z-]*):sagemaker:(?P<region>[a-z0-9-]*):(?P<account>\d*):"
    rf"pipeline/(?P<pipeline>{_NAME})(?:/execution/(?P<execution>{_NAME}))?$")
_LEGACY = re.compile(
    rf"^stepflow:(?:local:)?pipeline/(?P<pipeline>{_NAME})(?:/execution/(?P<execution>{_NAME}))?$")


@dataclass(frozen=True)
class PipelineArn:
    """A parsed pipeline or execution ARN; ``execution_id`` is None for a pipeline's."""

    pipeline_name: str
    execution_id: str | None = None
    region: str | None = None
    account: str | None = None


def pipeline_arn(pipeline_name: str, *, region: str, account: str | None = None) -> str:
    return (f"arn:aws:sagemaker:{region}:{account or PLACEHOLDER_ACCOUNT}:"
            f"pipeline/{pipeline_name}")


def execution_arn(pipeline_name: str, execution_id: str, *, region: str,
                  account: str | None = None) -> str:
    return f"{pipeline_arn(pipeline_name, region=region, account=account)}/execution/{execution_id}"


def job_arn(resource: str, job_name: str, *, region: str, account: str | None = None) -> str:
    """A SageMaker job's ARN: ``resource`` is ``processing-job`` or ``training-job``; SageMaker
    lower-cases the job's name inside it."""
    return f"arn:aws:sagemaker:{region}:{account or PLACEHOLDER_ACCOUNT}:{resource}/{job_name.lower()}"


def schedule_arn(schedule_name: str, *, region: str, account: str | None = None) -> str:
    """A pipeline schedule's ARN, EventBridge Scheduler's shape (the ``default`` group)."""
    return f"arn:aws:scheduler:{region}:{account or PLACEHOLDER_ACCOUNT}:schedule/default/{schedule_name}"


def is_legacy(arn: str) -> bool:
    """True for the ``stepflow:...`` ARNs older stores recorded."""
    return _LEGACY.match(arn) is not None


def parse(arn: str) -> PipelineArn:
    """Read a pipeline or execution ARN, in SageMaker's shape or the legacy one."""
    match = _SAGEMAKER.match(arn)
    if match:
        return PipelineArn(match["pipeline"], match["execution"], match["region"] or None,
                           match["account"] or None)
    match = _LEGACY.match(arn)
    if match:
        return PipelineArn(match["pipeline"], match["execution"])
    raise ValidationError(
        f"{arn!r} is not a pipeline or pipeline execution ARN; expected "
        "arn:aws:sagemaker:<region>:<account>:pipeline/<name>[/execution/<id>].",
        reason="InvalidArn")


def parse_execution(arn: str) -> PipelineArn:
    """Like :func:`parse`, but the ARN must name an execution."""
    parsed = parse(arn)
    if parsed.execution_id is None:
        raise ValidationError(
            f"{arn!r} is a pipeline ARN; an execution's ARN ends in /execution/<id> "
            "(Pipeline.list_executions() lists them).", reason="InvalidArn")
    return parsed


def execution_arn_of(pipeline_arn_text: str, execution_id: str, *, region: str) -> str:
    """An execution's ARN under a recorded pipeline ARN, in SageMaker's shape even when the
    record is legacy (``region`` fills what a legacy ARN lacks)."""
    parsed = parse(pipeline_arn_text)
    return execution_arn(parsed.pipeline_name, execution_id, region=parsed.region or region,
                         account=parsed.account)
