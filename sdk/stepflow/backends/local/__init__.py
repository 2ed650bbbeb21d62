"""The local backend: pipelines recorded in the store, steps run as processes on this machine.

Everything lives in the store next to the artifacts (``.stepflow/pipeline.json``,
``<execution>/execution.json``, ``.stepflow/executions/<id>.json``), so ``describe``,
``list_steps``, ``wait`` and ``result`` work from any process. One orchestrator runs an
execution; it holds a lock file while it lives, so a dead orchestrator is noticed at once
and its execution resumed (by ``resume``, ``wait``, or the next ``start``) without running
a finished or running step again.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stepflow import arns, layout
from stepflow.backends.base import Backend, OnChange, ShouldStop
from stepflow.backends.capabilities import check_runnable
from stepflow.backends.local.launcher import ProcessLauncher
from stepflow.backends.orchestrator import Orchestrator
from stepflow.backends.views import all_steps, describe_execution, list_steps
from stepflow.cache import cache_dir
from stepflow.engine import TERMINAL_EXECUTION_STATUSES, ExecutionState, Plan, new_execution, retry, select
from stepflow.engine.rerun import Selection
from stepflow.errors import BackendError
from stepflow.locks import flock, is_locked
from stepflow.remote_function.errors import RemoteFunctionError
from stepflow.runtime.key import configured_key, key_pipe, without_key
from stepflow.serialization import deserialize
from stepflow.storage import NotFound, ObjectStore, open_store
from stepflow.timefmt import millis, utcnow

if TYPE_CHECKING:
    from stepflow.compiler.bundle import Bundle

#: How long ``run`` waits for a lock another process holds only briefly (a liveness probe).
_PROBE_GRACE = 2.0
#: How long ``retry`` waits for the orchestrator of an ended execution to let go of it.
_RELEASE_GRACE = 10.0
#: How often ``run`` looks at an execution another live process orchestrates.
_FOLLOW_MAX_DELAY = 1.0


def new_execution_id(now: datetime | None = None) -> str:
    """Sortable by start time, unique without coordination: ``20261125t013000-3fa2c1``."""
    now = now or utcnow()
    return f"{now.strftime('%Y%m%dt%H%M%S')}-{secrets.token_hex(3)}"


def _pipeline_parallelism(record: Mapping[str, Any]) -> int | None:
    return (record.get("ParallelismConfiguration") or {}).get("MaxParallelExecutionSteps")


def _lowest(*limits: int | None) -> int | None:
    """The tightest of the limits that are set (None: no limit)."""
    given = [limit for limit in limits if limit]
    return min(given) if given else None


class LocalBackend(Backend):
    """``store`` is the store root (``s3_root_uri``), or a callable returning it.

    ``region`` goes into the ARNs of pipelines this backend records (default: the session's
    default region); their account is :data:`stepflow.arns.PLACEHOLDER_ACCOUNT`.

    ``parallelism`` is the installation's limit on the steps of one execution that run at
    once (the kubernetes backend's ``steps.maxParallelJobs``); an execution's own limit (its
    pipeline's ``ParallelismConfiguration``, or the start request's) can only lower it.

    ``env`` is what step processes start with (default: this process's environment) and
    ``integrity_key`` the key they verify and sign with (default: the one ``env``
    configures); the key reaches them on a pipe, never in an environment block.
    """

    name = "local"

    def __init__(self, store: ObjectStore | Callable[[], ObjectStore], *, run_dir: Path | None = None,
                 parallelism: int | None = None, env: Mapping[str, str] | None = None,
                 region: str | None = None, integrity_key: bytes | None = None) -> None:
        self._store = store
        self._region = region
        self.run_dir = run_dir or cache_dir() / "runs"
        self.parallelism = parallelism
        self._env = dict(os.environ if env is None else env)
        self.env = without_key(self._env)
        self._key = integrity_key

    @property
    def integrity_key(self) -> bytes | None:
        if self._key is None:
            self._key = configured_key(self._env)
        return self._key

    @property
    def region(self) -> str:
        from stepflow.workflow.defaults import default_region

        return self._region or default_region()

    def pipeline_store(self, pipeline_name: str) -> ObjectStore:
        return open_store(self.store.uri(pipeline_name), getattr(self.store, "endpoint_url", None))

    # -- pipelines -----------------------------------------------------------------------

    def upsert(self, bundle: Bundle, store: ObjectStore, *, role_arn: str | None = None,
               description: str | None = None, tags: Sequence[Mapping[str, str]] | None = None,
               parallelism: int | None = None) -> dict:
        name = bundle.pipeline_name
        check_runnable(name, bundle.definition, self.name)
        now = millis()
        try:
            record = self._pipeline_record(name)
        except BackendError:
            record = {"PipelineName": name, "CreationTime": now}
        if "PipelineArn" not in record or arns.is_legacy(record["PipelineArn"]):
            record["PipelineArn"] = arns.pipeline_arn(name, region=self.region)
        store.put_bytes(layout.in_pipeline(name, layout.definition_key(bundle.digest)), bundle.definition_bytes)
        record.update({"DefinitionDigest": bundle.digest, "LastModifiedTime": now,
                       "PipelineDescription": description, "RoleArn": role_arn,
                       "Tags": list(tags or record.get("Tags") or [])})
        if parallelism is not None:
            record["ParallelismConfiguration"] = {"MaxParallelExecutionSteps": parallelism}
        self.store.put_bytes(layout.in_pipeline(name, layout.pipeline_record_key()),
                             json.dumps(record, indent=1).encode())
        return {"PipelineArn": record["PipelineArn"]}

    def _pipeline_record(self, name: str) -> dict[str, Any]:
        try:
            return json.loads(self.store.get_bytes(layout.in_pipeline(name, layout.pipeline_record_key())))
        except NotFound:
            raise BackendError(
                f"Pipeline '{name}' does not exist in {self.store.root_uri}: create it first "
                "(Pipeline.upsert(), `stepflow run`, or `stepflow up`).", reason="PipelineNotFound") from None

    def definition(self, name: str, digest: str | None = None) -> dict[str, Any]:
        digest = digest or self._pipeline_record(name)["DefinitionDigest"]
        return json.loads(self.store.get_bytes(layout.in_pipeline(name, layout.definition_key(digest))))

    def describe(self, pipeline_name: str) -> dict:
        record = self._pipeline_record(pipeline_name)
        return {**record, "PipelineDefinition": json.dumps(self.definition(pipeline_name, record["DefinitionDigest"])),
                "PipelineStatus": "Active"}

    def delete(self, pipeline_name: str) -> dict:
        record = self._pipeline_record(pipeline_name)
        self.store.delete(layout.in_pipeline(pipeline_name, layout.pipeline_record_key()))
        return {"PipelineArn": record["PipelineArn"]}

    # -- executions ----------------------------------------------------------------------

    def create_execution(self, pipeline_name: str, *, parameters: Mapping[str, Any] | None = None,
                         execution_id: str | None = None, display_name: str | None = None,
                         parallelism: int | None = None, selection: Selection | None = None) -> ExecutionState:
        record = self._pipeline_record(pipeline_name)
        definition = self.definition(pipeline_name, record["DefinitionDigest"])
        plan = Plan.from_definition(definition)
        execution_id = execution_id or new_execution_id()
        pstore = self.pipeline_store(pipeline_name)
        if pstore.head(layout.execution_state_key(execution_id)) is not None:
            return self.execution_state(pipeline_name, execution_id)
        state = new_execution(plan, execution_id=execution_id, pipeline_name=pipeline_name,
                              parameters=parameters, now=utcnow(),
                              parallelism=_lowest(parallelism or _pipeline_parallelism(record), self.parallelism),
                              pipeline_arn=record["PipelineArn"],
                              execution_arn=arns.execution_arn_of(record["PipelineArn"], execution_id,
                                                                  region=self.region))
        if selection is not None:
            state = select(plan, state, self._ended_source(pipeline_name, selection.source_execution_id),
                           selection.steps)
        meta = {"definitionDigest": record["DefinitionDigest"], "displayName": display_name or execution_id,
                "backend": self.name}
        pstore.put_bytes(layout.execution_meta_key(execution_id), json.dumps(meta).encode())
        pstore.put_bytes(layout.execution_state_key(execution_id), state.to_json().encode())
        self._write_summary(pstore, state, meta["displayName"])
        return state

    def _ended_source(self, pipeline_name: str, execution_id: str) -> ExecutionState:
        source = self.execution_state(pipeline_name, execution_id)
        if not source.terminal:
            raise BackendError(
                f"Selective execution: source execution {execution_id} is still {source.status}; wait "
                "for it to end (Succeeded, Failed or Stopped) first.", reason="SourceExecutionRunning")
        return source

    def start(self, pipeline_name: str, *, parameters: Mapping[str, Any] | None = None,
              execution_id: str | None = None, display_name: str | None = None,
              parallelism: int | None = None, selection: Selection | None = None) -> str:
        self.resume_unfinished(pipeline_name)
        state = self.create_execution(pipeline_name, parameters=parameters, execution_id=execution_id,
                                      display_name=display_name, parallelism=parallelism,
                                      selection=selection)
        self._spawn(pipeline_name, state.execution_id)
        return state.execution_id

    def retry(self, pipeline_name: str, execution_id: str) -> None:
        """Reset the steps that did not succeed and orchestrate the execution again.

        The orchestrator lock is held while the state is reset, so the process that ran
        the execution (which may still be exiting after writing its end) is never raced."""
        plan = self._plan(pipeline_name, execution_id)
        retry(plan, self.execution_state(pipeline_name, execution_id), utcnow())  # refuses a live one at once
        with flock(self._lock_path(pipeline_name, execution_id), wait=_RELEASE_GRACE) as held:
            state = self.execution_state(pipeline_name, execution_id)
            if not held:
                raise BackendError(f"Execution {execution_id} is still being orchestrated ({state.status}); "
                                   "retry it once it has ended.", reason="ExecutionRunning")
            retried = retry(plan, state, utcnow())
            pstore = self.pipeline_store(pipeline_name)
            pstore.delete(layout.stop_request_key(execution_id))  # a stop was for the run that ended
            pstore.put_bytes(layout.execution_state_key(execution_id), retried.to_json().encode())
            self._write_summary(pstore, retried, self._meta(pipeline_name, execution_id).get("displayName"))
        self._spawn(pipeline_name, execution_id)

    def run(self, pipeline_name: str, execution_id: str, *, on_change: OnChange | None = None,
            should_stop: ShouldStop = lambda: False) -> ExecutionState:
        """Orchestrate here while no other process does; follow (and outlive) one that does.

        The orchestrator lock decides: held, this thread runs the engine; taken, this thread
        reports the state the other process writes, and takes over the moment it dies.
        """
        grace = _PROBE_GRACE
        delay = 0.05
        while True:
            with flock(self._lock_path(pipeline_name, execution_id), wait=grace) as held:
                if held:
                    orchestrator = self._orchestrator(pipeline_name, execution_id, on_change)
                    return orchestrator.run(should_stop=should_stop)
            grace = 0.0
            state = self.execution_state(pipeline_name, execution_id)
            if on_change is not None:
                on_change(state)
            if state.terminal or should_stop():
                return state
            time.sleep(delay)
            delay = min(_FOLLOW_MAX_DELAY, delay * 1.5)

    def _orchestrator(self, pipeline_name: str, execution_id: str, on_change: OnChange | None) -> Orchestrator:
        pstore = self.pipeline_store(pipeline_name)
        meta = self._meta(pipeline_name, execution_id)
        runs_on = meta.get("backend", "local")
        if runs_on != self.name:  # another launcher would not find its attempts: they would run twice
            raise BackendError(f"Execution '{execution_id}' of pipeline '{pipeline_name}' runs on backend {runs_on!r}, "
                               f"not {self.name!r}: resume or stop it where it runs (e.g. `stepflow run --backend "
                               f"{runs_on}`, or its operator).", reason="WrongBackend")
        plan = Plan.from_definition(self.definition(pipeline_name, meta["definitionDigest"]))
        state = self.execution_state(pipeline_name, execution_id)
        launcher = self._launcher(pipeline_name, execution_id, plan)

        def changed(new: ExecutionState) -> None:
            self._write_summary(pstore, new, meta.get("displayName"))
            if on_change is not None:
                on_change(new)

        def upload_log(step: str, attempt: int) -> None:
            self._save_log(launcher, pstore, execution_id, step, attempt)

        return Orchestrator(pstore, plan, state, launcher, on_change=changed, upload_log=upload_log)

    def _launcher(self, pipeline_name: str, execution_id: str, plan: Plan) -> Any:
        """What starts this execution's attempts (a subclass runs them elsewhere)."""
        return ProcessLauncher(self.run_dir, self.env, integrity_key=self.integrity_key)

    def _save_log(self, launcher: Any, pstore: ObjectStore, execution_id: str, step: str, attempt: int) -> None:
        """Keep an ended attempt's output in the store, where ``stepflow logs`` reads it."""
        path = launcher.log_path(execution_id, step, attempt)
        if path.exists():
            pstore.put_file(layout.attempt_log_key(execution_id, step, attempt), path)

    def _write_summary(self, pstore: ObjectStore, state: ExecutionState, display_name: str | None) -> None:
        summary = {"PipelineExecutionArn": state.execution_arn, "PipelineExecutionId": state.execution_id,
                   "PipelineExecutionDisplayName": display_name or state.execution_id,
                   "PipelineExecutionStatus": state.status, "StartTime": millis(state.started_at),
                   "EndTime": millis(state.ended_at) if state.ended_at else None,
                   "PipelineExecutionFailureReason": state.failure_reason}
        pstore.put_bytes(layout.execution_summary_key(state.execution_id), json.dumps(summary).encode())

    def _lock_path(self, pipeline_name: str, execution_id: str) -> Path:
        """Held by the one process orchestrating this execution, released when it dies."""
        return self.run_dir / "locks" / f"{pipeline_name}--{execution_id}.lock"

    def orchestrator_alive(self, pipeline_name: str, execution_id: str) -> bool:
        return is_locked(self._lock_path(pipeline_name, execution_id))

    #: The module whose ``__main__`` is this backend's detached orchestrator.
    orchestrator_module = "stepflow.backends.local"

    def _orchestrator_env(self) -> dict[str, str]:
        """What this backend's detached orchestrator needs besides the launcher's environment."""
        return {}

    def _spawn(self, pipeline_name: str, execution_id: str) -> None:
        """Start the detached orchestrator of ``start``/``resume``/``retry``; the key reaches it
        on a pipe, never in its environment."""
        log = self.run_dir / execution_id / "orchestrator.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        args = [sys.executable, "-m", self.orchestrator_module, "--root", self.store.root_uri,
                "--pipeline", pipeline_name, "--execution", execution_id, "--run-dir", str(self.run_dir)]
        key_fd, key_env = key_pipe(self.integrity_key)
        try:
            with open(log, "ab") as out:
                subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                 env={**self.env, **self._orchestrator_env(), **key_env}, start_new_session=True,
                                 pass_fds=() if key_fd is None else (key_fd,))
        finally:
            if key_fd is not None:
                os.close(key_fd)
        self._await_orchestrator(pipeline_name, execution_id)

    def _await_orchestrator(self, pipeline_name: str, execution_id: str) -> None:
        """Until the spawned orchestrator holds its lock (or the execution is over, or 10 s)."""
        deadline = time.monotonic() + 10
        while not self.orchestrator_alive(pipeline_name, execution_id):
            if self.execution_state(pipeline_name, execution_id).terminal or time.monotonic() > deadline:
                break
            time.sleep(0.02)

    def resume(self, pipeline_name: str, execution_id: str) -> bool:
        """Start an orchestrator for an unfinished execution nobody is running; True if started."""
        if self.execution_state(pipeline_name, execution_id).terminal:
            return False
        if self.orchestrator_alive(pipeline_name, execution_id):
            return False
        self._spawn(pipeline_name, execution_id)
        return True

    def resume_unfinished(self, pipeline_name: str) -> list[str]:
        resumed = []
        for summary in self._summaries(pipeline_name):
            if summary["PipelineExecutionStatus"] not in TERMINAL_EXECUTION_STATUSES:
                if self.resume(pipeline_name, summary["PipelineExecutionId"]):
                    resumed.append(summary["PipelineExecutionId"])
        return resumed

    def execution_state(self, pipeline_name: str, execution_id: str) -> ExecutionState:
        try:
            data = self.pipeline_store(pipeline_name).get_bytes(layout.execution_state_key(execution_id))
        except NotFound:
            raise BackendError(f"Execution '{execution_id}' of pipeline '{pipeline_name}' does not exist.",
                               reason="ExecutionNotFound") from None
        return ExecutionState.from_json(data)

    def result_uri(self, pipeline_name: str, execution_id: str, step_name: str) -> str:
        # Called for every step on every status update: a URI, not a store opened per call.
        return self.store.uri(layout.in_pipeline(pipeline_name, layout.results_prefix(execution_id, step_name)))

    def _meta(self, pipeline_name: str, execution_id: str) -> dict[str, Any]:
        return json.loads(self.pipeline_store(pipeline_name).get_bytes(layout.execution_meta_key(execution_id)))

    def _plan(self, pipeline_name: str, execution_id: str) -> Plan:
        meta = self._meta(pipeline_name, execution_id)
        return Plan.from_definition(self.definition(pipeline_name, meta["definitionDigest"]))

    def describe_execution(self, pipeline_name: str, execution_id: str) -> dict:
        state = self.execution_state(pipeline_name, execution_id)
        return describe_execution(state, display_name=self._meta(pipeline_name, execution_id).get("displayName"))

    def list_steps(self, pipeline_name: str, execution_id: str) -> list[dict]:
        return list_steps(self._plan(pipeline_name, execution_id), self.execution_state(pipeline_name, execution_id))

    def all_steps(self, pipeline_name: str, execution_id: str) -> list[dict]:
        """Every step in plan order, Pending and Skipped included (``views.all_steps``)."""
        return all_steps(self._plan(pipeline_name, execution_id), self.execution_state(pipeline_name, execution_id))

    def stop(self, pipeline_name: str, execution_id: str) -> None:
        state = self.execution_state(pipeline_name, execution_id)
        if state.terminal:
            return
        self.pipeline_store(pipeline_name).put_bytes(layout.stop_request_key(execution_id), b"{}")
        self.resume(pipeline_name, execution_id)  # someone must act on the request

    def wait(self, pipeline_name: str, execution_id: str, timeout: float | None = None) -> dict:
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = 0.05
        while True:
            state = self.execution_state(pipeline_name, execution_id)
            if state.terminal:
                return self.describe_execution(pipeline_name, execution_id)
            self.resume(pipeline_name, execution_id)
            if deadline is not None and time.monotonic() > deadline:
                raise BackendError(f"Execution '{execution_id}' did not finish within {timeout} s "
                                   f"(it is {state.status}).", reason="WaitTimeout")
            time.sleep(delay)
            delay = min(0.5, delay * 1.5)

    def _summaries(self, pipeline_name: str) -> list[dict[str, Any]]:
        prefix = layout.in_pipeline(pipeline_name, layout.execution_summaries_prefix())
        out = []
        for info in self.store.list(prefix):
            try:
                out.append(json.loads(self.store.get_bytes(info.key)))
            except (NotFound, ValueError):
                continue
        return sorted(out, key=lambda s: s["StartTime"], reverse=True)

    def list_executions(self, pipeline_name: str) -> dict:
        self._pipeline_record(pipeline_name)
        return {"PipelineExecutionSummaries": self._summaries(pipeline_name)}

    def result(self, pipeline_name: str, execution_id: str, step_name: str) -> Any:
        plan = self._plan(pipeline_name, execution_id)
        if step_name not in plan.steps:
            raise BackendError(f"Execution '{execution_id}' has no step '{step_name}'; its steps are: "
                               f"{', '.join(plan.order)}.", reason="StepNotFound")
        if plan.step(step_name).type != "Training":
            raise ValueError("This method can only be used on pipeline steps created using @step decorator.")
        step = self.execution_state(pipeline_name, execution_id).steps[step_name]
        key = self.integrity_key
        pstore = self.pipeline_store(pipeline_name)
        if step.status != "Succeeded":
            raised = self._step_exception(pstore, execution_id, step_name, key)
            raise RemoteFunctionError(
                f"Unable to retrieve step output as the step {step_name} is not in Completed status "
                f"(it is {step.status})."
                + (f" It failed with: {step.failure_reason}" if step.failure_reason else ""),
                exception=raised, reason="StepNotCompleted") from raised
        prefix = layout.results_prefix(step.reused_from or execution_id, step_name)
        return deserialize(pstore.get_bytes(layout.payload_key(prefix)),
                           pstore.get_bytes(layout.metadata_key(prefix)), key=key)

    @staticmethod
    def _step_exception(pstore: ObjectStore, execution_id: str, step_name: str,
                        key: bytes | None) -> BaseException | None:
        """What a failed step raised (its pickled exception), None when it left none."""
        prefix = layout.exception_prefix(execution_id, step_name)
        try:
            exc = deserialize(pstore.get_bytes(layout.payload_key(prefix)),
                              pstore.get_bytes(layout.metadata_key(prefix)), key=key)
        except NotFound:
            return None
        return exc if isinstance(exc, BaseException) else None
