"""The execution backend interface: what ``Pipeline``, the CLI, the reconciler and both
GitOps front ends call, and all they call.

A backend records definitions and runs executions. Two audiences, two vocabularies:
user-facing calls (``describe``, ``list_steps``, ...) return the SageMaker API's shapes so
code written against ``sagemaker.workflow`` reads them unchanged; the calls the GitOps core
makes (``create_execution``, ``run``, ``execution_state``) speak the engine's
:class:`~stepflow.engine.ExecutionState`, from which :mod:`stepflow.gitops.execution_status`
derives the resources' status, whatever the backend.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from stepflow.engine.rerun import Selection
from stepflow.errors import BackendError

if TYPE_CHECKING:
    from stepflow.compiler.bundle import Bundle
    from stepflow.engine import ExecutionState
    from stepflow.storage import ObjectStore

#: Told every new state of an execution while ``Backend.run`` follows it (from its thread).
OnChange = Callable[["ExecutionState"], None]
#: Asked between steps of ``Backend.run``: True means let go (the execution goes on).
ShouldStop = Callable[[], bool]


class Backend(ABC):
    """Where pipelines are recorded and executions run."""

    name: str = "backend"
    #: The store root, or a callable making it: called on first use, so a backend made for a
    #: command that never touches the store never opens one.
    _store: ObjectStore | Callable[[], ObjectStore]

    @property
    def store(self) -> ObjectStore:
        from stepflow.storage import ObjectStore

        if callable(self._store) and not isinstance(self._store, ObjectStore):
            self._store = self._store()
        return self._store

    @abstractmethod
    def upsert(self, bundle: Bundle, store: ObjectStore, *, role_arn: str | None,
               description: str | None, tags: Sequence[Mapping[str, str]] | None,
               parallelism: int | None = None) -> dict:
        """Record the published bundle's definition as the pipeline's current one.

        ``parallelism``: the pipeline's ParallelismConfiguration (kept when None), the
        step limit of executions started without their own.

        Returns ``{"PipelineArn": ...}`` as CreatePipeline/UpdatePipeline do.
        """

    @abstractmethod
    def definition(self, pipeline_name: str, digest: str | None = None) -> dict[str, Any]:
        """The recorded definition (the current one, or the one with ``digest``)."""

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
              execution_id: str | None = None, display_name: str | None = None,
              parallelism: int | None = None, selection: Selection | None = None) -> str:
        """Start an execution and return its id.

        ``parallelism``: at most this many steps at once (``ParallelismConfiguration``).
        ``selection``: run only these steps, reusing an ended execution's results for the
        steps they read (``SelectiveExecutionConfig``; :mod:`stepflow.engine.rerun`).
        """

    def retry(self, pipeline_name: str, execution_id: str) -> None:
        """Go on with a Failed or Stopped execution in place: the steps that did not succeed
        run again, the others keep their results (RetryPipelineExecution, ``argo retry``)."""
        raise BackendError(f"The {self.name} backend cannot retry executions.", reason="NotSupported")

    @abstractmethod
    def create_execution(self, pipeline_name: str, *, parameters: Mapping[str, Any] | None = None,
                         execution_id: str | None = None, display_name: str | None = None,
                         parallelism: int | None = None, selection: Selection | None = None) -> ExecutionState:
        """Record a new execution of the current definition without running it.

        Parameters are checked against the definition. Idempotent by ``execution_id``: a
        second call returns the recorded execution (deterministic names make retries safe).
        """

    @abstractmethod
    def run(self, pipeline_name: str, execution_id: str, *, on_change: OnChange | None = None,
            should_stop: ShouldStop = lambda: False) -> ExecutionState:
        """Make the execution progress until it ends or ``should_stop()``; return its state.

        Blocks the calling thread. Never runs a step twice: if another process is already
        driving the execution, follow it (reporting its states) and take over if it dies.
        Returning because of ``should_stop`` leaves the execution running for a later call.
        """

    @abstractmethod
    def execution_state(self, pipeline_name: str, execution_id: str) -> ExecutionState:
        """The execution's current state (``BackendError`` ExecutionNotFound when unknown)."""

    @abstractmethod
    def result_uri(self, pipeline_name: str, execution_id: str, step_name: str) -> str:
        """Where a step's results are (shown on the resources' status)."""

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

    def upsert(self, bundle: Bundle, store: ObjectStore, *, role_arn: str | None,
               description: str | None, tags: Sequence[Mapping[str, str]] | None,
               parallelism: int | None = None) -> dict:
        raise self._fail(f"create or update pipeline '{bundle.pipeline_name}'")

    def describe(self, pipeline_name: str) -> dict:
        raise self._fail(f"describe pipeline '{pipeline_name}'")

    def delete(self, pipeline_name: str) -> dict:
        raise self._fail(f"delete pipeline '{pipeline_name}'")

    def definition(self, pipeline_name: str, digest: str | None = None) -> dict[str, Any]:
        raise self._fail(f"read the definition of pipeline '{pipeline_name}'")

    def start(self, pipeline_name: str, *, parameters: Mapping[str, Any] | None,
              execution_id: str | None = None, display_name: str | None = None,
              parallelism: int | None = None, selection: Selection | None = None) -> str:
        raise self._fail(f"start pipeline '{pipeline_name}'")

    def create_execution(self, pipeline_name: str, *, parameters: Mapping[str, Any] | None = None,
                         execution_id: str | None = None, display_name: str | None = None,
                         parallelism: int | None = None, selection: Selection | None = None) -> ExecutionState:
        raise self._fail(f"create an execution of pipeline '{pipeline_name}'")

    def run(self, pipeline_name: str, execution_id: str, *, on_change: OnChange | None = None,
            should_stop: ShouldStop = lambda: False) -> ExecutionState:
        raise self._fail(f"run execution '{execution_id}'")

    def execution_state(self, pipeline_name: str, execution_id: str) -> ExecutionState:
        raise self._fail(f"read execution '{execution_id}'")

    def result_uri(self, pipeline_name: str, execution_id: str, step_name: str) -> str:
        raise self._fail(f"locate the results of step '{step_name}'")

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
