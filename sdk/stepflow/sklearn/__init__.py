"""``stepflow.sklearn``: where ported code finds ``sagemaker.sklearn``'s processor."""

from stepflow.sklearn.processing import SKLearnProcessor

__all__ = ["SKLearnProcessor"]
