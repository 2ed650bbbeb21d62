"""ConditionStep: run the if-branch or the else-branch depending on conditions."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from stepflow.workflow.conditions import Condition
from stepflow.workflow.steps import DependencyRef, RenderContext, Step, StepTypeEnum


class ConditionStep(Step):
    """Branches may hold steps or @step outputs; they are compiled inside this step."""

    step_type = StepTypeEnum.CONDITION

    def __init__(self, name: str, depends_on: Sequence[DependencyRef] | None = None,
                 display_name: str | None = None, description: str | None = None,
                 conditions: Sequence[Condition] | None = None,
                 if_steps: Sequence[Any] | None = None,
                 else_steps: Sequence[Any] | None = None) -> None:
        super().__init__(name, display_name, description, depends_on)
        self.conditions = list(conditions or [])
        self.if_steps = list(if_steps or [])
        self.else_steps = list(else_steps or [])

    def upstream_values(self) -> Any:
        return self.conditions

    def nested_steps(self) -> list[Step]:
        from stepflow.workflow.step_outputs import as_step

        return [as_step(s) for s in self.if_steps + self.else_steps]

    def arguments(self, ctx: RenderContext) -> dict[str, Any]:
        from stepflow.workflow.step_outputs import as_step

        return {"Conditions": [c.to_request() for c in self.conditions],
                "IfSteps": [ctx.render_step(as_step(s)) for s in self.if_steps],
                "ElseSteps": [ctx.render_step(as_step(s)) for s in self.else_steps]}
