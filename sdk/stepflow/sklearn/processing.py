"""``stepflow.sklearn.processing.SKLearnProcessor``, as ``sagemaker.sklearn.processing`` has it."""

from stepflow.workflow.processing import SKLearnProcessor

__all__ = ["SKLearnProcessor"]
