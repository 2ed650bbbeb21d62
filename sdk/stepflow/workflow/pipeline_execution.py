"""A started execution, shaped like the SDK's ``_PipelineExecution``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from stepflow.backends import Backend


@dataclass
class _PipelineExecution:
    pipeline_name: str
    execution_id: str
    backend: Backend

    @property
    def arn(self) -> str:
        return f"stepflow:pipeline/{self.pipeline_name}/execution/{self.execution_id}"

    def describe(self) -> dict[str, Any]:
        """PipelineExecutionStatus, StartTime, EndTime, FailureReason, ..."""
        return self.backend.describe_execution(self.pipeline_name, self.execution_id)

    def list_steps(self) -> list[dict[str, Any]]:
        """StepName, StepStatus, StartTime, EndTime, FailureReason, AttemptCount, Metadata."""
        return self.backend.list_steps(self.pipeline_name, self.execution_id)

    def wait(self, delay: float | None = None, max_attempts: int | None = None,
             timeout: float | None = None) -> dict[str, Any]:
        """Block until the execution is over; ``delay * max_attempts`` is the SDK's timeout."""
        if timeout is None and delay is not None and max_attempts is not None:
            timeout = delay * max_attempts
        return self.backend.wait(self.pipeline_name, self.execution_id, timeout)

    def stop(self) -> None:
        self.backend.stop(self.pipeline_name, self.execution_id)

    def result(self, step_name: str) -> Any:
        """The return value of a succeeded @step function step."""
        return self.backend.result(self.pipeline_name, self.execution_id, step_name)
