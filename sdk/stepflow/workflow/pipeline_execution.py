"""A started execution, shaped like the SDK's ``_PipelineExecution``.

As in the SDK, ``_PipelineExecution(arn=..., sagemaker_session=...)`` attaches to any
execution by its ARN (SageMaker's shape, or the legacy ``stepflow:`` one older stores
recorded; :mod:`stepflow.arns`); the session's backend answers every call.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from botocore.exceptions import WaiterError

from stepflow import arns
from stepflow.errors import BackendError

if TYPE_CHECKING:
    from stepflow.backends import Backend
    from stepflow.session import Session


_WAITER = "PipelineExecutionComplete"
_DEFAULT_DELAY, _DEFAULT_MAX_ATTEMPTS = 30, 60


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
