"""A started execution, shaped like the SDK's ``_PipelineExecution``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore.exceptions import WaiterError

from stepflow.errors import BackendError

if TYPE_CHECKING:
    from stepflow.backends import Backend


_WAITER = "PipelineExecutionComplete"
_DEFAULT_DELAY, _DEFAULT_MAX_ATTEMPTS = 30, 60


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
        """Block until the execution is over and return its description.

        As the SDK's waiter: a Failed execution raises botocore's ``WaiterError``
        ("Waiter encountered a terminal failure state", here with the failure reason), and
        so does running out of time (``delay * max_attempts`` seconds, the SDK's 30 x 60 by
        default; ``timeout`` overrides it). A Stopped execution also raises: the SDK's
        waiter would poll it until its attempts run out.
        """
        if timeout is None:
            timeout = (_DEFAULT_DELAY if delay is None else delay) * (
                _DEFAULT_MAX_ATTEMPTS if max_attempts is None else max_attempts)
        try:
            described = self.backend.wait(self.pipeline_name, self.execution_id, timeout)
        except BackendError as exc:
            if exc.reason != "WaitTimeout":
                raise
            raise WaiterError(name=_WAITER, reason=f"Max attempts exceeded ({exc.message})",
                              last_response=self.describe()) from exc
        status = described["PipelineExecutionStatus"]
        if status in ("Failed", "Stopped"):
            reason = (f'Waiter encountered a terminal failure state: For expression '
                      f'"PipelineExecutionStatus" we matched expected path: "{status}"')
            if described.get("FailureReason"):
                reason += f" (FailureReason: {described['FailureReason']})"
            raise WaiterError(name=_WAITER, reason=reason, last_response=described)
        return described

    def retry(self) -> None:
        """Go on with this Failed or Stopped execution: the steps that did not succeed run
        again, the others keep their results (SageMaker's RetryPipelineExecution)."""
        self.backend.retry(self.pipeline_name, self.execution_id)

    def stop(self) -> None:
        self.backend.stop(self.pipeline_name, self.execution_id)

    def result(self, step_name: str) -> Any:
        """The return value of a succeeded @step function step, once the execution is over.

        Raises ``RemoteFunctionError`` (``stepflow.remote_function.errors``) when the step
        did not complete; what the step raised is its ``exception`` and ``__cause__``.
        ``ValueError`` for a step that is not an @step function.
        """
        try:
            self.wait()
        except WaiterError as exc:
            if "terminal failure state" not in str(exc):
                raise
        return self.backend.result(self.pipeline_name, self.execution_id, step_name)
