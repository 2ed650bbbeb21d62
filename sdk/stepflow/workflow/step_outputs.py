"""Step outputs and ``get_step``: from a value a step will produce to the step itself."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from stepflow.errors import ValidationError
from stepflow.workflow.callsite import caller_location
from stepflow.workflow.entities import PipelineVariable

if TYPE_CHECKING:
    from stepflow.workflow.steps import Step


class StepOutput(PipelineVariable):
    """A value produced by a step."""

    def __init__(self, step: Step) -> None:
        self._step = step

    def _referenced_steps(self) -> tuple[Step, ...]:
        return (self._step,)


def get_step(step_output: StepOutput) -> Step:
    """The step behind an @step call's return value, e.g. to ``add_depends_on([...])``."""
    if not isinstance(step_output, StepOutput):
        raise ValidationError(
            f"get_step() takes the value returned by calling an @step function, got "
            f"{type(step_output).__name__}.", location=caller_location())
    return step_output._step


def as_step(value: Any) -> Step:
    """A pipeline's or branch's entry as a step: steps as is, step outputs by their step."""
    from stepflow.workflow.steps import Step

    if isinstance(value, StepOutput):
        return value._step
    if isinstance(value, Step):
        return value
    raise ValidationError(
        f"Expected a step or the return value of an @step function, got "
        f"{type(value).__name__} ({value!r}).")
