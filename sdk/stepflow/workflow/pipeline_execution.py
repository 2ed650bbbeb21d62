"""A started execution, shaped like the SDK's ``_PipelineExecution``.

As in the SDK, ``_PipelineExecution(arn=..., sagemaker_session=...)`` attaches to any
execution by its ARN (SageMaker's shape, or the legacy ``stepflow:`` one older stores
recorded; :mod:`stepflow.arns`); the session's backend answers every call.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from stepflow import arns

if TYPE_CHECKING:
    from stepflow.backends import Backend
    from stepflow.session import Session


class _PipelineExecution:
    def __init__(self, arn: str, sagemaker_session: Session | None = None) -> None:
        parsed = arns.parse_execution(arn)
        self._arn: str | None = arn
        self.pipeline_name = parsed.pipeline_name
        self.execution_id: str = parsed.execution_id or ""
        self._session = sagemaker_session

    @classmethod
    def _started(cls, pipeline_name: str, execution_id: str,
                 session: Session) -> _PipelineExecution:
        """The execution ``Pipeline.start`` just started (its ARN is read when first asked)."""
        execution = cls.__new__(cls)
        execution._arn = None
        execution.pipeline_name = pipeline_name
        execution.execution_id = execution_id
        execution._session = session
        return execution

    def __repr__(self) -> str:
        return f"_PipelineExecution(arn={self.arn!r})"

    @property
    def sagemaker_session(self) -> Session:
        if self._session is None:
            from stepflow.session import Session

            self._session = Session()
        return self._session

    @property
    def backend(self) -> Backend:
        return self.sagemaker_session.backend

    @property
    def arn(self) -> str:
        if self._arn is None:
            self._arn = str(self.describe()["PipelineExecutionArn"])
        return self._arn

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
