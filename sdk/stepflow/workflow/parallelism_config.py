"""``ParallelismConfiguration``: at most this many steps of an execution run at once
(SageMaker's class, same signature). ``Pipeline.start(parallelism_config=...)`` takes it,
or the request dict ``{"MaxParallelExecutionSteps": n}``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from stepflow.errors import ValidationError
from stepflow.workflow.callsite import caller_location


class ParallelismConfiguration:
    def __init__(self, max_parallel_execution_steps: int) -> None:
        if isinstance(max_parallel_execution_steps, bool) or not isinstance(max_parallel_execution_steps, int) \
                or max_parallel_execution_steps < 1:
            raise ValidationError(
                "max_parallel_execution_steps must be a whole number >= 1, got "
                f"{max_parallel_execution_steps!r}.", location=caller_location())
        self.max_parallel_execution_steps = max_parallel_execution_steps

    def to_request(self) -> dict[str, Any]:
        return {"MaxParallelExecutionSteps": self.max_parallel_execution_steps}


def max_parallel_steps(config: Any) -> int | None:
    """The step limit of a ``ParallelismConfiguration`` or its request dict; None for None."""
    if config is None:
        return None
    if isinstance(config, ParallelismConfiguration):
        return config.max_parallel_execution_steps
    if isinstance(config, Mapping) and "MaxParallelExecutionSteps" in config:
        return ParallelismConfiguration(config["MaxParallelExecutionSteps"]).max_parallel_execution_steps
    raise ValidationError(
        f"parallelism_config must be a ParallelismConfiguration(max_parallel_execution_steps=...) or "
        f"{{'MaxParallelExecutionSteps': n}}, got {config!r}.", location=caller_location())
