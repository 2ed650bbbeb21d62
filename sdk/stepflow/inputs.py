"""``stepflow.inputs``: where ported code finds ``sagemaker.inputs.TrainingInput``."""

from stepflow.workflow.training import TrainingInput

__all__ = ["TrainingInput"]
