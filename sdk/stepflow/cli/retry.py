"""``stepflow retry EXECUTION``: go on with a Failed or Stopped execution in place.

The steps that did not succeed run again (new attempt numbers, so earlier logs and
records stay); the ones that succeeded keep their results and are not run again. It is
SageMaker's RetryPipelineExecution and ``argo retry``; locally the rules are
:func:`stepflow.engine.retry`'s, on SageMaker the service's (``--backend sagemaker``).
"""

from __future__ import annotations

import click

from stepflow import arns
from stepflow.cli.common import EXIT_CODES, console, emit, local_backend, output_option, store_option, summary
from stepflow.cli.executions import execution_argument, find_execution


@click.command("retry")
@execution_argument
@click.option("--backend", "backend_name", type=click.Choice(["local", "sagemaker"]), default="local",
              show_default=True, help="Where the execution runs.")
@click.option("--parallelism", type=click.IntRange(min=1),
              help="sagemaker: run at most N steps at the same time while retrying.")
@click.option("--detach", is_flag=True, help="Return once the execution is running again.")
@click.option("--timeout", type=float, help="Give up waiting after this many seconds.")
@output_option()
@store_option
def retry_command(execution: str, backend_name: str, parallelism: int | None, detach: bool,
                  timeout: float | None, output: str) -> None:
    """Re-run the failed and stopped steps of EXECUTION (an id, a unique prefix, or
    PIPELINE/ID), reusing the results of the steps that succeeded.

    Waits for the execution to end unless --detach; exit code 0 Succeeded, 1 Failed,
    3 Stopped. With --backend sagemaker, EXECUTION is PIPELINE/ID or the execution's ARN;
    SageMaker runs the failed steps again and the command prints the execution's ARN.

    \b
    Examples:
      stepflow retry 20261201t0102-ab12cd
      stepflow retry --backend sagemaker churn/7k2x9q3vbn1p --parallelism 4
    """
    if backend_name == "sagemaker":
        _retry_on_sagemaker(execution, parallelism)
        return
    if parallelism is not None:
        raise click.UsageError("--parallelism applies to --backend sagemaker; a local retry keeps "
                               "the execution's own cap.")
    backend = local_backend()
    ref = find_execution(backend, execution)
    backend.retry(ref.pipeline, ref.execution_id)
    console(stderr=True).print(f"retrying {ref.pipeline}/{ref.execution_id}", markup=False)
    if detach:
        return
    backend.wait(ref.pipeline, ref.execution_id, timeout=timeout)
    data = summary(backend, ref.pipeline, ref.execution_id)
    emit(data, output)
    raise SystemExit(EXIT_CODES.get(data["status"], 1))


def _retry_on_sagemaker(execution: str, parallelism: int | None) -> None:
    """RetryPipelineExecution; region, endpoint and credentials from boto3's configuration."""
    from stepflow.backends.sagemaker import SageMakerBackend
    from stepflow.session import Session

    if execution.startswith("arn:"):
        parsed = arns.parse_execution(execution)
        pipeline, execution_id = parsed.pipeline_name, parsed.execution_id or ""
    else:
        pipeline, _, execution_id = execution.partition("/")
        if not execution_id:
            raise click.UsageError(f"{execution!r}: with --backend sagemaker, name the execution as "
                                   "PIPELINE/ID or by its ARN (stepflow executions lists them).")
    backend = SageMakerBackend(Session().store)
    backend.retry(pipeline, execution_id, parallelism=parallelism)
    click.echo(backend.execution_arn(pipeline, execution_id))


COMMANDS = [retry_command]
