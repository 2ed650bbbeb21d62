"""The sagemaker backend: pipelines recorded in SageMaker Pipelines, executions run there.

The definition stepflow compiles is SageMaker's format and its artifacts sit in the store
in SageMaker's layout, so this backend only talks to the SageMaker API: CreatePipeline or
UpdatePipeline (nothing when the definition did not change), StartPipelineExecution,
DescribePipelineExecution and ListPipelineExecutionSteps to follow it, Stop and Retry. The
steps run in SageMaker training jobs, which read the artifacts from the store and write
results to ``<pipeline>/<SageMaker execution id>/<step>/results``.

Our execution ids (a PipelineExecution's name, say) are not SageMaker's, which SageMaker
picks: each is recorded in the store (``layout.sagemaker_execution_key``) with the
idempotency token that started it, written before the call and again with the ARN, so a
restarted controller follows the execution it started and never starts it twice.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from stepflow import layout
from stepflow.backends.base import Backend, OnChange, ShouldStop
from stepflow.backends.sagemaker import errors
from stepflow.backends.sagemaker.client import sagemaker_client
from stepflow.backends.sagemaker.mapping import execution_id_of, execution_state, step_metadata
from stepflow.backends.sagemaker.poller import Backoff, Pollers
from stepflow.backends.views import describe_execution, list_steps
from stepflow.engine import TERMINAL_EXECUTION_STATUSES, ExecutionState, Plan, resolve_parameters
from stepflow.engine.rerun import Selection
from stepflow.errors import BackendError, ConfigurationError
from stepflow.serialization import deserialize
from stepflow.storage import NotFound, ObjectStore
from stepflow.workflow.defaults import DEFAULT_ROLE_ARN

if TYPE_CHECKING:
    from stepflow.compiler.bundle import Bundle

__all__ = ["Backoff", "SageMakerBackend"]


def _token(*parts: str) -> str:
    """A ClientRequestToken (32-128 characters) that is the same for the same request."""
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def display_name(text: str) -> str:
    """``text`` in SageMaker's display-name alphabet (``[a-zA-Z0-9](-*[a-zA-Z0-9])*``, ≤ 82)."""
    cleaned = re.sub(r"[^a-zA-Z0-9]+", "-", text).strip("-")[:82].rstrip("-")
    return cleaned or "execution"


def parameter_text(value: Any) -> str:
    """A typed parameter value as StartPipelineExecution's string ``Value``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class SageMakerBackend(Backend):
    """``store``: the store root (results, large definitions, execution records), or a
    callable returning it. ``role_arn``: the execution role when ``upsert`` is given none.
    ``client``: a boto3 SageMaker client (default: boto3's standard configuration)."""

    name = "sagemaker"

    def __init__(self, store: ObjectStore | Callable[[], ObjectStore], *, role_arn: str | None = None,
                 client: Any = None, backoff: Backoff | None = None, parallelism: int | None = None) -> None:
        self._store = store
        self.role_arn = role_arn
        self._client = client
        self.parallelism = parallelism
        self.pollers = Pollers(backoff or Backoff())
        self._lock = threading.Lock()
        self._arns: dict[tuple[str, str], str] = {}
        self._plans: dict[str, Plan] = {}
        self._parameters: dict[str, dict[str, Any]] = {}

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = sagemaker_client()
        return self._client

    def _call(self, action: str, operation: str, **kwargs: Any) -> dict[str, Any]:
        """One API call. ResourceNotFound/ResourceInUse reach the caller as ClientError
        (callers decide by code what they mean); everything else becomes our error."""
        try:
            return getattr(self.client, operation)(**kwargs)
        except ClientError as exc:
            if errors.error_code(exc) in (errors.NOT_FOUND, errors.IN_USE):
                raise
            raise errors.translate(exc, action) from None
        except BotoCoreError as exc:
            raise errors.translate(exc, action) from None

    def _pages(self, action: str, operation: str, key: str, **kwargs: Any) -> list[dict[str, Any]]:
        """Every item of a paginated call (botocore's paginator follows NextToken)."""
        try:
            return [item for page in self.client.get_paginator(operation).paginate(**kwargs)
                    for item in page.get(key, [])]
        except ClientError as exc:
            raise errors.translate(exc, action) from None
        except BotoCoreError as exc:
            raise errors.translate(exc, action) from None

    # -- pipelines -----------------------------------------------------------------------

    def _describe_or_none(self, name: str) -> dict[str, Any] | None:
        """DescribePipeline, or None when there is no such pipeline.

        SageMaker answers ResourceNotFound; some implementations (moto) answer a
        ValidationException instead, so that one is settled by asking ListPipelines whether
        the name exists: decided by codes and a second call, never by message text.
        """
        action = f"describe pipeline '{name}'"
        try:
            return self._call(action, "describe_pipeline", PipelineName=name)
        except BackendError as exc:
            if exc.reason != errors.INVALID_DEFINITION or self._listed(name):
                raise
            return None
        except ClientError as exc:
            if errors.error_code(exc) == errors.NOT_FOUND:
                return None
            raise errors.translate(exc, action) from None

    def _listed(self, name: str) -> bool:
        summaries = self._pages("list pipelines", "list_pipelines", "PipelineSummaries", PipelineNamePrefix=name)
        return any(s.get("PipelineName") == name for s in summaries)

    def describe(self, pipeline_name: str) -> dict:
        described = self._describe_or_none(pipeline_name)
        if described is None:
            raise BackendError(f"Pipeline '{pipeline_name}' does not exist in SageMaker (region "
                               f"{self.client.meta.region_name}): create it first (Pipeline.upsert(), "
                               "`stepflow run --backend sagemaker`).", reason="PipelineNotFound")
        described.pop("ResponseMetadata", None)
        return described

    def definition(self, pipeline_name: str, digest: str | None = None) -> dict[str, Any]:
        if digest is not None:
            key = layout.in_pipeline(pipeline_name, layout.definition_key(digest))
            return json.loads(self.store.get_bytes(key))
        return json.loads(self.describe(pipeline_name)["PipelineDefinition"])

    def inline_limit(self) -> int:
        """SageMaker's limit on an inline PipelineDefinition, read from botocore's model."""
        shape = self.client.meta.service_model.shape_for("PipelineDefinition")
        return int(shape.metadata["max"])

    def _definition_argument(self, bundle: Bundle, store: ObjectStore) -> dict[str, Any]:
        """Inline when it fits, else where ``publish`` put it in the store (S3 only)."""
        body = bundle.definition_bytes.decode()
        if len(body) <= self.inline_limit():
            return {"PipelineDefinition": body}
        uri = store.uri(layout.in_pipeline(bundle.pipeline_name, layout.definition_key(bundle.digest)))
        if not uri.startswith("s3://"):
            raise ConfigurationError(
                f"The definition of pipeline '{bundle.pipeline_name}' is {len(body)} characters, over "
                f"SageMaker's inline limit of {self.inline_limit()}, so SageMaker must read it from S3, "
                f"but the store is {store.root_uri}: use an s3:// s3_root_uri with the sagemaker backend.",
                reason="DefinitionTooLarge")
        bucket, _, key = uri[len("s3://"):].partition("/")
        return {"PipelineDefinitionS3Location": {"Bucket": bucket, "ObjectKey": key}}

    def upsert(self, bundle: Bundle, store: ObjectStore, *, role_arn: str | None = None,
               description: str | None = None, tags: Sequence[Mapping[str, str]] | None = None,
               parallelism: int | None = None) -> dict:
        name = bundle.pipeline_name
        role = role_arn or self.role_arn
        unset = [step.name for step in Plan.from_definition(json.loads(bundle.definition_bytes)).steps.values()
                 if step.arguments.get("RoleArn") == DEFAULT_ROLE_ARN]
        if unset:
            raise errors.step_role_missing(name, unset)
        definition = self._definition_argument(bundle, store)
        current = self._describe_or_none(name)
        if current is None:
            if not role:
                raise errors.role_missing(name)
            extra: dict[str, Any] = {"Tags": [dict(t) for t in tags]} if tags else {}
            if description:
                extra["PipelineDescription"] = description
            if parallelism:
                extra["ParallelismConfiguration"] = {"MaxParallelExecutionSteps": int(parallelism)}
            try:
                created = self._call(f"create pipeline '{name}'", "create_pipeline", PipelineName=name,
                                     PipelineDisplayName=display_name(name), RoleArn=role,
                                     ClientRequestToken=_token("create", name, bundle.digest),
                                     **definition, **extra)
                return {"PipelineArn": created["PipelineArn"]}
            except ClientError as exc:
                if errors.error_code(exc) != errors.IN_USE:
                    raise errors.translate(exc, f"create pipeline '{name}'") from None
            current = self.describe(name)  # created meanwhile by someone else: update it
        if not self._unchanged(current, bundle, role, description, parallelism):
            extra = {"PipelineDescription": description} if description else {}
            if parallelism:
                extra["ParallelismConfiguration"] = {"MaxParallelExecutionSteps": int(parallelism)}
            self._call(f"update pipeline '{name}'", "update_pipeline", PipelineName=name,
                       PipelineDisplayName=display_name(name), RoleArn=role or current["RoleArn"],
                       **definition, **extra)
        if tags:
            self._call(f"tag pipeline '{name}'", "add_tags", ResourceArn=current["PipelineArn"],
                       Tags=[dict(t) for t in tags])
        return {"PipelineArn": current["PipelineArn"]}

    @staticmethod
    def _unchanged(current: Mapping[str, Any], bundle: Bundle, role: str | None, description: str | None,
                   parallelism: int | None) -> bool:
        try:
            same = json.loads(current.get("PipelineDefinition") or "null") == json.loads(bundle.definition_bytes)
        except ValueError:
            same = False
        return (same and (role is None or role == current.get("RoleArn"))
                and (description is None or description == current.get("PipelineDescription"))
                and (parallelism is None or parallelism == (current.get("ParallelismConfiguration") or {})
                     .get("MaxParallelExecutionSteps")))

    def delete(self, pipeline_name: str) -> dict:
        try:
            deleted = self._call(f"delete pipeline '{pipeline_name}'", "delete_pipeline", PipelineName=pipeline_name,
                                 ClientRequestToken=_token("delete", pipeline_name, str(time.time_ns())))
        except ClientError as exc:
            if errors.error_code(exc) == errors.NOT_FOUND:
                raise BackendError(f"Pipeline '{pipeline_name}' does not exist in SageMaker.",
                                   reason="PipelineNotFound") from None
            raise errors.translate(exc, f"delete pipeline '{pipeline_name}'") from None
        return {"PipelineArn": deleted["PipelineArn"]}

    # -- our execution ids and SageMaker's ARNs -------------------------------------------

    def _record_key(self, pipeline_name: str, execution_id: str) -> str:
        return layout.in_pipeline(pipeline_name, layout.sagemaker_execution_key(execution_id))

    def _record(self, pipeline_name: str, execution_id: str) -> dict[str, Any] | None:
        try:
            return json.loads(self.store.get_bytes(self._record_key(pipeline_name, execution_id)))
        except NotFound:
            return None

    def _write_record(self, pipeline_name: str, execution_id: str, record: Mapping[str, Any]) -> None:
        self.store.put_bytes(self._record_key(pipeline_name, execution_id), json.dumps(record, indent=1).encode())

    def execution_arn(self, pipeline_name: str, execution_id: str) -> str:
        """SageMaker's ARN for one of our ids (recorded), or for one of SageMaker's own ids."""
        cached = self._arns.get((pipeline_name, execution_id))
        if cached:
            return cached
        record = self._record(pipeline_name, execution_id)
        if record and record.get("executionArn"):
            arn = str(record["executionArn"])
            self._parameters.setdefault(arn, dict(record.get("parameters") or {}))
        else:
            pipeline_arn = self.describe(pipeline_name)["PipelineArn"]
            arn = f"{pipeline_arn}/execution/{execution_id}"
        with self._lock:
            self._arns[(pipeline_name, execution_id)] = arn
        return arn

    # -- executions ----------------------------------------------------------------------

    def create_execution(self, pipeline_name: str, *, parameters: Mapping[str, Any] | None = None,
                         execution_id: str | None = None, display_name: str | None = None,
                         parallelism: int | None = None, selection: Selection | None = None) -> ExecutionState:
        if execution_id is not None:
            record = self._record(pipeline_name, execution_id)
            if record and record.get("executionArn"):
                return self.execution_state(pipeline_name, execution_id)
        arn = self._start(pipeline_name, parameters, execution_id, display_name, parallelism, selection)
        # Just started: no step has run yet, so DescribePipelineExecution says all there is,
        # unless the execution already ended (an empty pipeline, or a stand-in that ends them
        # at once): then its steps are listed, or they would all read as skipped.
        described = self._describe_execution(arn)
        listed: list[dict[str, Any]] = []
        if described.get("PipelineExecutionStatus") in TERMINAL_EXECUTION_STATUSES:
            listed = self._pages("list an execution's steps", "list_pipeline_execution_steps",
                                 "PipelineExecutionSteps", PipelineExecutionArn=arn, SortOrder="Descending")
        return execution_state(self._plan(arn), described, listed,
                               execution_id=execution_id or execution_id_of(arn), pipeline_name=pipeline_name,
                               parameters=self._execution_parameters(arn))

    def start(self, pipeline_name: str, *, parameters: Mapping[str, Any] | None = None,
              execution_id: str | None = None, display_name: str | None = None,
              parallelism: int | None = None, selection: Selection | None = None) -> str:
        """Start an execution; its id is SageMaker's unless ``execution_id`` names one of ours."""
        if execution_id is not None:
            self.create_execution(pipeline_name, parameters=parameters, execution_id=execution_id,
                                  display_name=display_name, parallelism=parallelism, selection=selection)
            return execution_id
        return execution_id_of(self._start(pipeline_name, parameters, None, display_name, parallelism, selection))

    def _start(self, pipeline_name: str, parameters: Mapping[str, Any] | None, execution_id: str | None,
               display: str | None, parallelism: int | None, selection: Selection | None = None) -> str:
        described = self.describe(pipeline_name)
        plan = Plan.from_definition(json.loads(described["PipelineDefinition"]))
        typed = resolve_parameters(plan, parameters)  # refused here, with the user's names, not by SageMaker
        given = {name: typed[name] for name in (parameters or {})}
        token = _token("start", pipeline_name, execution_id or str(time.time_ns()))
        shown = display_name(display or execution_id or pipeline_name)
        if execution_id is not None:  # write-ahead: a restart retries with the same token
            self._write_record(pipeline_name, execution_id, {"clientRequestToken": token, "displayName": shown,
                                                             "parameters": typed})
        extra: dict[str, Any] = {}
        limit = parallelism or self.parallelism
        if limit:
            extra["ParallelismConfiguration"] = {"MaxParallelExecutionSteps": int(limit)}
        if selection is not None:  # SageMaker's selective execution: it reuses the source's results
            extra["SelectiveExecutionConfig"] = {
                "SourcePipelineExecutionArn": self.execution_arn(pipeline_name, selection.source_execution_id),
                "SelectedSteps": [{"StepName": step} for step in selection.steps]}
        try:
            started = self._call(f"start pipeline '{pipeline_name}'", "start_pipeline_execution",
                                 PipelineName=pipeline_name, PipelineExecutionDisplayName=shown,
                                 PipelineParameters=[{"Name": k, "Value": parameter_text(v)} for k, v in given.items()],
                                 ClientRequestToken=token, **extra)
        except ClientError as exc:
            raise errors.translate(exc, f"start pipeline '{pipeline_name}'") from None
        arn = started["PipelineExecutionArn"]
        if execution_id is not None:
            self._write_record(pipeline_name, execution_id, {"clientRequestToken": token, "displayName": shown,
                                                             "parameters": typed, "executionArn": arn})
        with self._lock:
            self._arns[(pipeline_name, execution_id or execution_id_of(arn))] = arn
            self._parameters[arn] = typed
        return arn

    def _plan(self, arn: str) -> Plan:
        plan = self._plans.get(arn)
        if plan is None:
            answer = self._call("read an execution's definition", "describe_pipeline_definition_for_execution",
                                PipelineExecutionArn=arn)
            plan = Plan.from_definition(json.loads(answer["PipelineDefinition"]))
            with self._lock:
                self._plans[arn] = plan
        return plan

    def _execution_parameters(self, arn: str) -> dict[str, Any]:
        known = self._parameters.get(arn)
        if known is None:
            listed = self._pages("list an execution's parameters", "list_pipeline_parameters_for_execution",
                                 "PipelineParameters", PipelineExecutionArn=arn)
            known = {p["Name"]: p["Value"] for p in listed}
            with self._lock:
                self._parameters[arn] = known
        return known

    def _describe_execution(self, arn: str) -> dict[str, Any]:
        try:
            return self._call("describe an execution", "describe_pipeline_execution", PipelineExecutionArn=arn)
        except ClientError as exc:
            if errors.error_code(exc) == errors.NOT_FOUND:
                raise BackendError(f"Execution {arn} does not exist in SageMaker.",
                                   reason="ExecutionNotFound") from None
            raise errors.translate(exc, "describe an execution") from None

    def _answers(self, arn: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """DescribePipelineExecution and every page of ListPipelineExecutionSteps."""
        described = self._describe_execution(arn)
        listed = self._pages("list an execution's steps", "list_pipeline_execution_steps", "PipelineExecutionSteps",
                             PipelineExecutionArn=arn, SortOrder="Descending")
        return described, listed

    def _fetch(self, pipeline_name: str, execution_id: str, arn: str) -> ExecutionState:
        described, listed = self._answers(arn)
        return execution_state(self._plan(arn), described, listed, execution_id=execution_id,
                               pipeline_name=pipeline_name, parameters=self._execution_parameters(arn))

    def execution_state(self, pipeline_name: str, execution_id: str) -> ExecutionState:
        return self._fetch(pipeline_name, execution_id, self.execution_arn(pipeline_name, execution_id))

    def run(self, pipeline_name: str, execution_id: str, *, on_change: OnChange | None = None,
            should_stop: ShouldStop = lambda: False) -> ExecutionState:
        """Follow the execution SageMaker runs; threads following the same one share a poller."""
        arn = self.execution_arn(pipeline_name, execution_id)
        return self.pollers.follow(arn, lambda: self._fetch(pipeline_name, execution_id, arn), on_change,
                                   should_stop)

    def result_uri(self, pipeline_name: str, execution_id: str, step_name: str) -> str:
        folder = execution_id_of(self.execution_arn(pipeline_name, execution_id))
        return self.store.uri(layout.in_pipeline(pipeline_name, layout.results_prefix(folder, step_name)))

    def describe_execution(self, pipeline_name: str, execution_id: str) -> dict:
        arn = self.execution_arn(pipeline_name, execution_id)
        described = self._describe_execution(arn)
        state = execution_state(self._plan(arn), described, [], execution_id=execution_id,
                                pipeline_name=pipeline_name, parameters=self._execution_parameters(arn))
        out = describe_execution(state, display_name=described.get("PipelineExecutionDisplayName"))
        for key in ("ParallelismConfiguration", "PipelineExecutionDescription", "SelectiveExecutionConfig"):
            if described.get(key):
                out[key] = described[key]
        return out

    def list_steps(self, pipeline_name: str, execution_id: str) -> list[dict]:
        arn = self.execution_arn(pipeline_name, execution_id)
        described, listed = self._answers(arn)
        plan = self._plan(arn)
        state = execution_state(plan, described, listed, execution_id=execution_id, pipeline_name=pipeline_name,
                                parameters=self._execution_parameters(arn))
        metadata = step_metadata(listed)
        views = list_steps(plan, state)
        for view in views:
            if view["StepName"] in metadata:
                view["Metadata"] = metadata[view["StepName"]]
        return views

    def stop(self, pipeline_name: str, execution_id: str) -> None:
        arn = self.execution_arn(pipeline_name, execution_id)
        described = self._describe_execution(arn)
        if described.get("PipelineExecutionStatus") in ("Stopped", "Failed", "Succeeded", "Stopping"):
            return
        self._call("stop an execution", "stop_pipeline_execution", PipelineExecutionArn=arn,
                   ClientRequestToken=_token("stop", arn))

    def retry(self, pipeline_name: str, execution_id: str, *, parallelism: int | None = None) -> None:
        """RetryPipelineExecution: run a failed execution's failed steps again (same id)."""
        arn = self.execution_arn(pipeline_name, execution_id)
        extra: dict[str, Any] = {}
        if parallelism or self.parallelism:
            extra["ParallelismConfiguration"] = {"MaxParallelExecutionSteps": int(parallelism or self.parallelism or 1)}
        self._call("retry an execution", "retry_pipeline_execution", PipelineExecutionArn=arn,
                   ClientRequestToken=_token("retry", arn, str(time.time_ns())), **extra)

    def wait(self, pipeline_name: str, execution_id: str, timeout: float | None = None) -> dict:
        deadline = None if timeout is None else time.monotonic() + timeout
        state = self.run(pipeline_name, execution_id,
                         should_stop=lambda: deadline is not None and time.monotonic() > deadline)
        if not state.terminal:
            raise BackendError(f"Execution '{execution_id}' did not finish within {timeout} s "
                               f"(it is {state.status}).", reason="WaitTimeout")
        return self.describe_execution(pipeline_name, execution_id)

    def list_executions(self, pipeline_name: str) -> dict:
        self.describe(pipeline_name)
        summaries = self._pages(f"list the executions of '{pipeline_name}'", "list_pipeline_executions",
                                "PipelineExecutionSummaries", PipelineName=pipeline_name, SortOrder="Descending")
        for summary in summaries:
            summary.setdefault("PipelineExecutionId", execution_id_of(summary["PipelineExecutionArn"]))
        return {"PipelineExecutionSummaries": summaries}

    def result(self, pipeline_name: str, execution_id: str, step_name: str) -> Any:
        arn = self.execution_arn(pipeline_name, execution_id)
        plan = self._plan(arn)
        if step_name not in plan.steps:
            raise BackendError(f"Execution '{execution_id}' has no step '{step_name}'; its steps are: "
                               f"{', '.join(plan.order)}.", reason="StepNotFound")
        if plan.step(step_name).type != "Training":
            raise ValueError("This method can only be used on pipeline steps created using @step decorator.")
        step = self.execution_state(pipeline_name, execution_id).steps[step_name]
        if step.status != "Succeeded":
            raise BackendError(f"Unable to retrieve step output as the step {step_name} is not in "
                               f"Completed status (it is {step.status}).", reason="StepNotCompleted")
        from stepflow.config import load_config

        prefix = layout.in_pipeline(pipeline_name, layout.results_prefix(execution_id_of(arn), step_name))
        return deserialize(self.store.get_bytes(f"{prefix}/{layout.PAYLOAD}"),
                           self.store.get_bytes(f"{prefix}/{layout.METADATA}"), key=load_config().integrity_key)
