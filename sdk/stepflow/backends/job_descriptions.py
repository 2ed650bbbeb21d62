"""The job each step attempt ran, described as SageMaker describes it.

On SageMaker a Processing or Training step runs a job, and what that job reports
(``ProcessingJobStatus``, ``TrainingJobName``, ``ModelArtifacts.S3ModelArtifacts``, ...) is
readable by the expressions of later steps. The backends stepflow's engine runs (local
processes, Kubernetes Jobs) describe each attempt's job the same way: the answer
DescribeProcessingJob / DescribeTrainingJob would give, with the job's name (the attempt's
Kubernetes Job; the same name locally), its ARN, status, times and failure reason, the
definition's fields the job echoes (evaluated), and a training job's model location.

The orchestrator writes the descriptions (``layout.job_description_key``), never the
attempt's own process, so user code cannot forge what later steps read. An attempt is
described when it starts and again whenever its job's status changes, *before* the state
that says so is persisted or decided on: a step never reads as ended before its job's
description does, and a restarted orchestrator describes again whatever its predecessor
had not persisted.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from stepflow import arns, layout
from stepflow.engine import Attempt, ExecutionState, ExpressionError, Plan, to_text
from stepflow.engine.plan import CONTAINER_ARGUMENTS
from stepflow.engine.state import EXECUTING, FAILED, STARTING, STOPPED, STOPPING, SUCCEEDED
from stepflow.errors import StepflowError
from stepflow.k8s_names import job_name
from stepflow.storage import NotFound, ObjectStore
from stepflow.timefmt import millis

log = logging.getLogger(__name__)

#: An attempt's status → its job's (``ProcessingJobStatus``/``TrainingJobStatus``).
JOB_STATUS = {STARTING: "InProgress", EXECUTING: "InProgress", STOPPING: "Stopping",
              SUCCEEDED: "Completed", FAILED: "Failed", STOPPED: "Stopped"}
#: A training job's status → its ``SecondaryStatus``.
_SECONDARY_STATUS = {"InProgress": "Training", "Stopping": "Stopping", "Completed": "Completed",
                     "Failed": "Failed", "Stopped": "Stopped"}


@dataclass(frozen=True)
class JobKind:
    """How SageMaker describes one kind of job: the prefix of its own fields
    (``<prefix>JobName``, ``<prefix>JobStatus``, ``<prefix>StartTime``...), the resource
    in its ARN, the request fields its description echoes, and what else we report of it."""

    prefix: str
    resource: str
    echoed: tuple[str, ...]
    extra: tuple[str, ...] = ()

    @property
    def reported(self) -> frozenset[str]:
        """The properties the job adds to what the step's definition says."""
        own = {f"{self.prefix}Job{field}" for field in ("Name", "Arn", "Status")}
        own |= {f"{self.prefix}StartTime", f"{self.prefix}EndTime"}
        return frozenset(own | set(self.extra) | {"FailureReason", "CreationTime", "LastModifiedTime"})


KINDS = {
    "Processing": JobKind("Processing", "processing-job", (
        "ProcessingInputs", "ProcessingOutputConfig", "ProcessingResources", "StoppingCondition",
        "AppSpecification", "Environment", "NetworkConfig", "RoleArn", "ExperimentConfig")),
    "Training": JobKind("Training", "training-job", (
        "AlgorithmSpecification", "HyperParameters", "RoleArn", "InputDataConfig", "OutputDataConfig",
        "ResourceConfig", "VpcConfig", "StoppingCondition", "EnableNetworkIsolation",
        "EnableInterContainerTrafficEncryption", "EnableManagedSpotTraining", "CheckpointConfig",
        "DebugHookConfig", "ExperimentConfig", "TensorBoardOutputConfig", "ProfilerConfig", "Environment",
        "RetryStrategy"), extra=("SecondaryStatus", "ModelArtifacts", "TrainingTimeInSeconds")),
}
#: The job properties an engine-run backend reports, by step type (what the job adds to the
#: step's definition; ``backends.capabilities`` refuses reads of others at publish).
REPORTED: Mapping[str, frozenset[str]] = {step_type: kind.reported for step_type, kind in KINDS.items()}


def job_arn(step_type: str, execution_arn: str | None, name: str) -> str:
    """The ARN of job ``name`` of a ``step_type`` step, in the execution's region and account
    (the session's region when the execution's ARN has none)."""
    where = arns.parse(execution_arn) if execution_arn else None
    region = where.region if where is not None and where.region else None
    if region is None:
        from stepflow.workflow.defaults import default_region

        region = default_region()
    return arns.job_arn(KINDS[step_type].resource, name, region=region,
                        account=where.account if where is not None else None)


def describe(step_type: str, attempt: Attempt, arguments: Mapping[str, Any], *, name: str,
             arn: str) -> dict[str, Any]:
    """SageMaker's description of the job attempt ``attempt`` of a ``step_type`` step ran,
    ``arguments`` being the step's Arguments with their expressions evaluated."""
    kind = KINDS[step_type]
    status = JOB_STATUS[attempt.status]
    out: dict[str, Any] = {f"{kind.prefix}JobName": name, f"{kind.prefix}JobArn": arn,
                           f"{kind.prefix}JobStatus": status}
    if step_type == "Training":
        out["SecondaryStatus"] = _SECONDARY_STATUS[status]
    if status == "Failed" and attempt.failure_reason:
        out["FailureReason"] = attempt.failure_reason
    out.update({field: arguments[field] for field in kind.echoed if field in arguments})
    output_path = (arguments.get("OutputDataConfig") or {}).get("S3OutputPath")
    if step_type == "Training" and isinstance(output_path, str):
        # Where SageMaker puts a training job's model: <S3OutputPath>/<job name>/output/model.tar.gz.
        out["ModelArtifacts"] = {"S3ModelArtifacts": f"{output_path.rstrip('/')}/{name}/output/model.tar.gz"}
    out["CreationTime"] = out[f"{kind.prefix}StartTime"] = millis(attempt.started_at)
    if attempt.ended_at is not None:
        out[f"{kind.prefix}EndTime"] = millis(attempt.ended_at)
        if step_type == "Training":
            # Whole seconds, at least one (SageMaker's model: a job bills a second at least).
            out["TrainingTimeInSeconds"] = max(1, math.ceil((attempt.ended_at - attempt.started_at).total_seconds()))
    out["LastModifiedTime"] = millis(attempt.ended_at or attempt.started_at)
    return out


#: Evaluates an expression tree in an execution's context, reading the documents it needs.
Evaluate = Callable[[ExecutionState, Any], Any]


class JobBook:
    """The job descriptions of one execution, kept by its orchestrator: written as its
    attempts' jobs change status (:meth:`record`), located for the expressions that read
    them (:meth:`uris`). ``store`` is rooted at the pipeline's folder."""

    def __init__(self, store: ObjectStore, plan: Plan, state: ExecutionState) -> None:
        self.store, self.plan = store, plan
        #: (step, attempt) → the job status its stored description has (what the persisted
        #: state says: descriptions are written before the state that implies them).
        self._described = {(s.name, a.number): JOB_STATUS[a.status] for s in state.steps.values() for a in s.attempts}
        #: The steps whose job properties the definition reads.
        self._read = sorted({step for _, step, _ in plan.job_property_reads})
        self._source_attempts: dict[tuple[str, str], int | None] = {}

    def record(self, state: ExecutionState, evaluate: Evaluate) -> None:
        """Describe every attempt whose job's status differs from its stored description
        (``evaluate`` gives the fields it echoes their values)."""
        for step in state.steps.values():
            if step.type not in KINDS:
                continue
            for attempt in step.attempts:
                status = JOB_STATUS[attempt.status]
                if self._described.get((step.name, attempt.number)) == status:
                    continue
                name = job_name(state.execution_id, step.name, attempt.number)
                description = describe(step.type, attempt, self._arguments(state, step.name, evaluate), name=name,
                                       arn=job_arn(step.type, state.execution_arn, name))
                self.store.put_bytes(layout.job_description_key(state.execution_id, step.name, attempt.number),
                                     json.dumps(description, indent=1).encode())
                self._described[(step.name, attempt.number)] = status

    def uris(self, state: ExecutionState) -> dict[str, str]:
        """Step → the URI of its latest job's description, for the steps whose job
        properties the definition reads (a selective execution's reused step: the job of the
        execution that ran it)."""
        out: dict[str, str] = {}
        for name in self._read:
            step = state.steps[name]
            if step.reused_from is not None:
                execution, number = step.reused_from, self._source_attempt(step.reused_from, name)
            else:
                execution, number = state.execution_id, step.attempts[-1].number if step.attempts else None
            if number is not None:
                out[name] = self.store.uri(layout.job_description_key(execution, name, number))
        return out

    def _arguments(self, state: ExecutionState, step: str, evaluate: Evaluate) -> dict[str, Any]:
        """The fields a description echoes, evaluated as the service evaluates them for the
        job (container arguments and environment as text); a field that cannot be evaluated
        is left out (the attempt fails on it, and says why)."""
        kind, arguments = KINDS[self.plan.step(step).type], self.plan.step(step).arguments
        out: dict[str, Any] = {}
        for field in kind.echoed:
            if field not in arguments:
                continue
            try:
                out[field] = evaluate(state, arguments[field])
            except ExpressionError as exc:
                log.warning("the description of step %s's job leaves out %s: %s", step, field, exc)
        section, key = CONTAINER_ARGUMENTS[self.plan.step(step).type]
        if isinstance((out.get(section) or {}).get(key), list):
            out[section] = {**out[section], key: [to_text(value) for value in out[section][key]]}
        if isinstance(out.get("Environment"), Mapping):
            out["Environment"] = {str(k): to_text(v) for k, v in out["Environment"].items()}
        return out

    def _source_attempt(self, execution_id: str, step: str) -> int | None:
        """The number of ``step``'s last attempt in the (ended) execution ``execution_id``."""
        if (execution_id, step) not in self._source_attempts:
            try:
                source = ExecutionState.from_json(self.store.get_bytes(layout.execution_state_key(execution_id)))
                attempts = source.steps[step].attempts if step in source.steps else []
                self._source_attempts[(execution_id, step)] = attempts[-1].number if attempts else None
            except (NotFound, StepflowError) as exc:
                log.warning("no job description for reused step %s: source execution %s: %s", step, execution_id, exc)
                self._source_attempts[(execution_id, step)] = None
        return self._source_attempts[(execution_id, step)]

