"""The execution backend interface that ``Pipeline`` and ``_PipelineExecution`` delegate to.

A backend records definitions and runs executions. Return values use the SageMaker API's
shapes (``PipelineExecutionStatus``, ``StepName``, ``StepStatus``, ...) so code written
against ``sagemaker.workflow`` reads them unchanged.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from stepflow.errors import BackendError

if TYPE_CHECKING:
    from stepflow.compiler.bundle import Bundle
    from stepflow.storage import ObjectStore


class Backend(ABC):
    """Where pipelines are recorded and executions run."""

    name: str = "backend"

    @abstractmethod
    def upsert(self, bundle: "Bundle", store: "ObjectStore", *, role_arn: str | None,
               description: str | None, tags: Sequence[Mapping[str, str]] | None) -> dict:
        """Record the published bundle's definition as the pipeline's current one.

        Returns ``{"PipelineArn": ...}`` as CreatePipeline/UpdatePipeline do.
        """

    @abstractmethod
    def describe(self, pipeline_name: str) -> dict:
        """DescribePipeline's shape (PipelineName, PipelineArn, PipelineDefinition, ...).

        Raises ``BackendError`` with ``reason="PipelineNotFound"`` when there is none.
        """

    @abstractmethod
    def delete(self, pipeline_name: str) -> dict:
        """Forget the pipeline; artifacts stay in the store."""

    @abstractmethod
    def start(self, pipeline_name: str, *, parameters: Mapping[str, Any] | None,
              execution_id: str | None = None, display_name: str | None = None) -> str:
        """Start an execution and return its id."""

    @abstractmethod
    def describe_execution(self, pipeline_name: str, execution_id: str) -> dict:
        """PipelineExecutionStatus, StartTime, EndTime, FailureReason, ..."""

    @abstractmethod
    def list_steps(self, pipeline_name: str, execution_id: str) -> list[dict]:
        """StepName, StepStatus, StartTime, EndTime, FailureReason, AttemptCount, Metadata."""

    @abstractmethod
    def stop(self, pipeline_name: str, execution_id: str) -> None:
        """Ask the execution to stop; running steps are stopped."""

    @abstractmethod
    def wait(self, pipeline_name: str, execution_id: str, timeout: float | None) -> dict:
        """Block until the execution is over (or timeout); returns describe_execution()."""

    @abstractmethod
    def list_executions(self, pipeline_name: str) -> dict:
        """``{"PipelineExecutionSummaries": [...]}``, newest first."""

    @abstractmethod
    def result(self, pipeline_name: str, execution_id: str, step_name: str) -> Any:
        """The unpickled return value of a succeeded @step function step."""


class NoBackend(Backend):
    """The default until an execution backend is configured: every call says so."""

    name = "none"

    def _fail(self, action: str) -> BackendError:
        return BackendError(
            f"Cannot {action}: no execution backend is configured. Compiling and publishing "
            "work without one (Pipeline.definition(), `stepflow compile`); to record and run "
            "pipelines, pass a backend to the session, e.g. Session(backend=...).",
            reason="NoBackend")

    def upsert(self, bundle: "Bundle", store: "ObjectStore", *, role_arn: str | None,
               description: str | None, tags: Sequence[Mapping[str, str]] | None) -> dict:
        raise self._fail(f"create or update pipeline '{bundle.pipeline_name}'")

    def describe(self, pipeline_name: str) -> dict:
        raise self._fail(f"describe pipeline '{pipeline_name}'")

    def delete(self, pipeline_name: str) -> dict:
        raise self._fail(f"delete pipeline '{pipeline_name}'")

    def start(self, pipeline_name: str, *, parameters: Mapping[str, Any] | None,
              execution_id: str | None = None, display_name: str | None = None) -> str:
        raise self._fail(f"start pipeline '{pipeline_name}'")

    def describe_execution(self, pipeline_name: str, execution_id: str) -> dict:
        raise self._fail(f"describe execution '{execution_id}'")

    def list_steps(self, pipeline_name: str, execution_id: str) -> list[dict]:
        raise self._fail(f"list the steps of execution '{execution_id}'")

    def stop(self, pipeline_name: str, execution_id: str) -> None:
        raise self._fail(f"stop execution '{execution_id}'")

    def wait(self, pipeline_name: str, execution_id: str, timeout: float | None) -> dict:
        raise self._fail(f"wait for execution '{execution_id}'")

    def list_executions(self, pipeline_name: str) -> dict:
        raise self._fail(f"list the executions of pipeline '{pipeline_name}'")

    def result(self, pipeline_name: str, execution_id: str, step_name: str) -> Any:
        raise self._fail(f"read the result of step '{step_name}'")
