"""``stepflow.estimator``: where ported code finds ``sagemaker.estimator.Estimator``."""

from stepflow.workflow.training import Estimator

__all__ = ["Estimator"]
