"""``stepflow.model``: where ported code finds ``sagemaker.model.Model``."""

from stepflow.workflow.models import Model

__all__ = ["Model"]
