"""SageMaker's ``sagemaker.remote_function`` names that @step programs import."""
