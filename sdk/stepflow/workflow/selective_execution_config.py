"""``SelectiveExecutionConfig``: run some steps of a pipeline again, reusing an earlier
execution's results for the steps they read (SageMaker's class, same signature).

``Pipeline.start(selective_execution_config=...)`` takes it; what runs and what is reused
is decided by :mod:`stepflow.engine.rerun`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from stepflow.errors import ValidationError
from stepflow.workflow.callsite import caller_location


class SelectiveExecutionConfig:
    """The steps to run, and the execution whose results the others come from.

    ``source_pipeline_execution_arn`` is an execution of the same pipeline that ended
    (Succeeded, Failed or Stopped); when None and ``reference_latest_execution`` is true,
    ``start()`` takes the pipeline's latest execution. Every step a selected step reads
    from must be selected too or have succeeded in the source.
    """

    def __init__(self, selected_steps: Sequence[str], reference_latest_execution: bool = True,
                 source_pipeline_execution_arn: str | None = None) -> None:
        if isinstance(selected_steps, str) or not all(isinstance(s, str) for s in selected_steps or []):
            raise ValidationError(
                f"selected_steps must be a list of step names, got {selected_steps!r}.",
                location=caller_location())
        self.source_pipeline_execution_arn = source_pipeline_execution_arn
        self.selected_steps = list(selected_steps)
        self.reference_latest_execution = reference_latest_execution

    def __repr__(self) -> str:
        return (f"SelectiveExecutionConfig(selected_steps={self.selected_steps!r}, "
                f"source_pipeline_execution_arn={self.source_pipeline_execution_arn!r})")

    def to_request(self) -> dict[str, Any]:
        """The StartPipelineExecution ``SelectiveExecutionConfig`` field."""
        request: dict[str, Any] = {}
        if self.source_pipeline_execution_arn is not None:
            request["SourcePipelineExecutionArn"] = self.source_pipeline_execution_arn
        request["SelectedSteps"] = [{"StepName": name} for name in self.selected_steps]
        return request
