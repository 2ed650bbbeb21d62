"""FailStep: end the execution as failed with a message (docs/SAGEMAKER-COMPATIBILITY.md,
"Condition and Fail steps")."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from stepflow.workflow.entities import render
from stepflow.workflow.steps import DependencyRef, RenderContext, Step, StepTypeEnum


class FailStep(Step):
    step_type = StepTypeEnum.FAIL

    def __init__(self, name: str, error_message: Any = None,
                 display_name: str | None = None, description: str | None = None,
                 depends_on: Sequence[DependencyRef] | None = None) -> None:
        super().__init__(name, display_name, description, depends_on)
        self.error_message = error_message if error_message is not None else ""

    def upstream_values(self) -> Any:
        return [self.error_message]

    def arguments(self, ctx: RenderContext) -> dict[str, Any]:
        return {"ErrorMessage": render(self.error_message)}
