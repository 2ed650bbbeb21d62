"""``stepflow.transformer``: where ported code finds ``sagemaker.transformer.Transformer``."""

from stepflow.workflow.models import Transformer

__all__ = ["Transformer"]
