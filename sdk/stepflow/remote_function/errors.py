"""``RemoteFunctionError``, where SageMaker's SDK has it (``sagemaker.remote_function.errors``).

``execution.result(step)`` raises it for a step that did not complete, with the step's own
exception (unpickled from the execution's ``exception/`` folder) as its ``__cause__`` and
``exception``, so ``except RemoteFunctionError`` ported from a notebook catches it and the
traceback shows what the step raised.
"""

from __future__ import annotations

from stepflow.errors import StepflowError


class RemoteFunctionError(StepflowError):
    """A remote function (an @step) failed or its result cannot be had."""

    reason = "RemoteFunctionError"

    def __init__(self, message: str, *, exception: BaseException | None = None,
                 reason: str | None = None) -> None:
        super().__init__(message, reason=reason)
        self.exception = exception
        """What the step raised, when it ran and failed."""
