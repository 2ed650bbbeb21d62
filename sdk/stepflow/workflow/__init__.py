"""The user API, module by module as in ``sagemaker.workflow``."""
