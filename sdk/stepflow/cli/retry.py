"""``stepflow retry EXECUTION``: go on with a Failed or Stopped execution in place.

The steps that did not succeed run again (new attempt numbers, so earlier logs and
records stay); the ones that succeeded keep their results and are not run again. It is
SageMaker's RetryPipelineExecution and ``argo retry``; the rules are
:func:`stepflow.engine.retry`'s.
"""

from __future__ import annotations

import click

from stepflow.cli.common import EXIT_CODES, console, emit, local_backend, output_option, store_option, summary
from stepflow.cli.executions import execution_argument, find_execution


@click.command("retry")
@execution_argument
@click.option("--detach", is_flag=True, help="Return once the execution is running again.")
@click.option("--timeout", type=float, help="Give up waiting after this many seconds.")
@output_option
@store_option
def retry_command(execution: str, detach: bool, timeout: float | None, output: str) -> None:
    """Re-run the failed and stopped steps of EXECUTION (an id, a unique prefix, or
    PIPELINE/ID), reusing the results of the steps that succeeded.

    Waits for the execution to end unless --detach; exit code 0 Succeeded, 1 Failed,
    3 Stopped."""
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


COMMANDS = [retry_command]
