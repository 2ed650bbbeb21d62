"""``stepflow run --backend sagemaker``: compile, publish, upsert on SageMaker, start, follow.

SageMaker orchestrates and its training jobs run the steps; this process only follows the
execution (the backend's shared poller) and draws the same step table as a local run.
Ctrl-C asks SageMaker to stop the execution; a second one detaches and leaves it running.
"""

from __future__ import annotations

import json
import shutil
from typing import TYPE_CHECKING, Any

import click

from stepflow.cli.common import EXIT_CODES, emit, steps_table

if TYPE_CHECKING:
    from rich.console import Console

    from stepflow.backends.sagemaker import SageMakerBackend
    from stepflow.engine import ExecutionState, Plan


def sagemaker_backend(pipeline: Any) -> SageMakerBackend:
    """The session's backend when it is SageMaker's, else one over the session's store."""
    from stepflow.backends.sagemaker import SageMakerBackend

    session = pipeline.session
    if isinstance(session.backend, SageMakerBackend):
        return session.backend
    return SageMakerBackend(lambda: session.store, role_arn=session.config.pipeline.get("RoleArn"))


def run_on_sagemaker(pipeline: Any, given: dict[str, str], *, parallelism: int | None, output: str, detach: bool,
                     role_arn: str | None, err: Console) -> None:
    from stepflow.cli.run import Interrupts, PlainProgress, StepView, _usage_error
    from stepflow.compiler.bundle import scratch_dir
    from stepflow.compiler.publish import publish
    from stepflow.engine import ParameterError, Plan, resolve_parameters

    backend = sagemaker_backend(pipeline)
    bundle = pipeline.compile(scratch_dir())
    try:
        definition = json.loads(bundle.definition_bytes)
        try:
            resolve_parameters(definition, given)
        except ParameterError as exc:
            _usage_error(err, exc)
        report = publish(bundle, pipeline.session.store)
        arn = backend.upsert(bundle, pipeline.session.store, role_arn=role_arn, description=None,
                             tags=None)["PipelineArn"]
    finally:
        shutil.rmtree(bundle.root, ignore_errors=True)
    err.print(f"published {bundle.pipeline_name}: {report.uploaded_files} files uploaded; SageMaker pipeline {arn}",
              markup=False)
    plan = Plan.from_definition(definition)
    state = backend.create_execution(bundle.pipeline_name, parameters=given, parallelism=parallelism)
    if detach:
        click.echo(json.dumps(_summary(backend, state), indent=2) if output == "json" else state.execution_id)
        return
    err.print(f"execution {state.execution_arn}", markup=False)
    view = StepView(plan, state)
    progress = PlainProgress(err, view.steps)

    def changed(new: ExecutionState) -> None:
        view.state = new
        progress.update()

    with Interrupts(backend, bundle.pipeline_name, state.execution_id, err) as interrupts:  # type: ignore[arg-type]
        final = backend.run(bundle.pipeline_name, state.execution_id, on_change=changed,
                            should_stop=interrupts.should_stop)
    data = _summary(backend, final, plan)
    if not final.terminal:
        err.print(f"detached: {final.execution_arn} is {final.status} on SageMaker", markup=False)
    elif output == "text":
        err.print(steps_table(StepView(plan, final).steps()))
    emit(data, output)
    raise SystemExit(EXIT_CODES.get(data["status"], 1) if final.terminal else 130)


def _summary(backend: SageMakerBackend, state: ExecutionState, plan: Plan | None = None) -> dict[str, Any]:
    name, execution_id = state.pipeline_name, state.execution_id
    steps = [{"name": s.name, "type": s.type, "status": s.status, "attempts": len(s.attempts),
              "failureReason": s.failure_reason, "skipReason": s.skip_reason,
              "resultUri": backend.result_uri(name, execution_id, s.name)
              if s.type == "Training" and s.status == "Succeeded" else None,
              "logUri": None, "exceptionUri": None}
             for s in state.steps.values()]
    return {"pipeline": name, "executionId": execution_id, "executionArn": state.execution_arn,
            "status": state.status, "failureReason": state.failure_reason, "startTime": None, "endTime": None,
            "parameters": dict(state.parameters), "store": backend.store.root_uri, "steps": steps}
