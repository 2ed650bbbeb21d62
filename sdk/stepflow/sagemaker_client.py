"""``Session.sagemaker_client`` off AWS: the SageMaker API calls ported code makes on it,
answered by the session's backend in the API's shapes.

Notebooks reach past the SDK for a few pipeline calls
(``sagemaker_client.describe_pipeline_execution(PipelineExecutionArn=...)``,
``list_pipeline_execution_steps``, ...). Those work here on any backend; anything else names
what is supported instead of failing somewhere inside botocore.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from stepflow import arns
from stepflow.errors import BackendError

if TYPE_CHECKING:
    from stepflow.backends import Backend

_OPERATIONS = ("describe_pipeline", "delete_pipeline", "start_pipeline_execution",
               "describe_pipeline_execution", "list_pipeline_executions",
               "list_pipeline_execution_steps", "stop_pipeline_execution",
               "describe_processing_job")


def _pipeline_name(name_or_arn: str) -> str:
    """SageMaker accepts a pipeline's name or its ARN wherever it asks for ``PipelineName``."""
    return arns.parse(name_or_arn).pipeline_name if ":" in name_or_arn else name_or_arn


class BackendSageMakerClient:
    """The pipeline calls of boto3's ``sagemaker`` client, on a stepflow backend."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    def __repr__(self) -> str:
        return f"<BackendSageMakerClient backend={self.backend.name}>"

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        raise AttributeError(
            f"sagemaker_client.{name} is not available on the {self.backend.name} backend; "
            f"supported calls: {', '.join(_OPERATIONS)}. Pass your own boto3 client as "
            "Session(sagemaker_client=...) to call SageMaker itself.")

    def describe_pipeline(self, PipelineName: str) -> dict[str, Any]:  # noqa: N803 (the API's names)
        return self.backend.describe(_pipeline_name(PipelineName))

    def delete_pipeline(self, PipelineName: str, ClientRequestToken: str | None = None) -> dict[str, Any]:  # noqa: N803
        return self.backend.delete(_pipeline_name(PipelineName))

    def start_pipeline_execution(self, PipelineName: str,  # noqa: N803
                                 PipelineParameters: Sequence[dict[str, Any]] = (),  # noqa: N803
                                 PipelineExecutionDisplayName: str | None = None,  # noqa: N803
                                 **_: Any) -> dict[str, Any]:
        name = _pipeline_name(PipelineName)
        execution_id = self.backend.start(
            name, parameters={p["Name"]: p["Value"] for p in PipelineParameters},
            display_name=PipelineExecutionDisplayName)
        return {"PipelineExecutionArn":
                self.backend.describe_execution(name, execution_id)["PipelineExecutionArn"]}

    def describe_pipeline_execution(self, PipelineExecutionArn: str) -> dict[str, Any]:  # noqa: N803
        parsed = arns.parse_execution(PipelineExecutionArn)
        return self.backend.describe_execution(parsed.pipeline_name, str(parsed.execution_id))

    def list_pipeline_executions(self, PipelineName: str, **_: Any) -> dict[str, Any]:  # noqa: N803
        return self.backend.list_executions(_pipeline_name(PipelineName))

    def list_pipeline_execution_steps(self, PipelineExecutionArn: str, **_: Any) -> dict[str, Any]:  # noqa: N803
        parsed = arns.parse_execution(PipelineExecutionArn)
        return {"PipelineExecutionSteps":
                self.backend.list_steps(parsed.pipeline_name, str(parsed.execution_id))}

    def stop_pipeline_execution(self, PipelineExecutionArn: str, **_: Any) -> dict[str, Any]:  # noqa: N803
        parsed = arns.parse_execution(PipelineExecutionArn)
        self.backend.stop(parsed.pipeline_name, str(parsed.execution_id))
        return {"PipelineExecutionArn": PipelineExecutionArn}

    def describe_processing_job(self, ProcessingJobName: str) -> dict[str, Any]:  # noqa: N803
        raise BackendError(
            f"Processing job {ProcessingJobName!r}: the {self.backend.name} backend runs no "
            "SageMaker processing jobs, so there is none to describe. A pipeline's steps are "
            "described by list_pipeline_execution_steps (or execution.list_steps()).",
            reason="ProcessingJobNotFound")
