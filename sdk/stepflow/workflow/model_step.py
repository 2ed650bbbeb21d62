"""``stepflow.workflow.model_step``: where ported code finds ``ModelStep``."""

from stepflow.workflow.steps import ModelStep

__all__ = ["ModelStep"]
