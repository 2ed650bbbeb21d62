"""Values the pipeline service knows about the running execution
(docs/SAGEMAKER-COMPATIBILITY.md, "Parameters and execution variables")."""

from __future__ import annotations

from typing import Any

from stepflow.workflow import placeholders
from stepflow.workflow.entities import PipelineVariable


class ExecutionVariable(PipelineVariable):
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"ExecutionVariable({self.name!r})"

    @property
    def expr(self) -> dict[str, Any]:
        return {"Get": f"Execution.{self.name}"}

    def to_string(self) -> ExecutionVariable:  # type: ignore[override]
        """Already a string expression, rendered bare (as in the SDK)."""
        return self

    def placeholder(self) -> placeholders._ExecutionVariable:
        return placeholders._ExecutionVariable(self.name)


class ExecutionVariables:
    """The execution variables, by the SDK's names."""

    START_DATETIME = ExecutionVariable("StartDateTime")
    CURRENT_DATETIME = ExecutionVariable("CurrentDateTime")
    PIPELINE_NAME = ExecutionVariable("PipelineName")
    PIPELINE_ARN = ExecutionVariable("PipelineArn")
    PIPELINE_EXECUTION_ID = ExecutionVariable("PipelineExecutionId")
    PIPELINE_EXECUTION_ARN = ExecutionVariable("PipelineExecutionArn")
    TRAINING_JOB_NAME = ExecutionVariable("TrainingJobName")
    PROCESSING_JOB_NAME = ExecutionVariable("ProcessingJobName")
