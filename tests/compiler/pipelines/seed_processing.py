"""Seed example: a ProcessingStep whose outputs feed an @step function."""

from stepflow.workflow.function_step import step
from stepflow.workflow.pipeline import Pipeline
from stepflow.workflow.processing import ProcessingInput, ProcessingOutput, SKLearnProcessor
from stepflow.workflow.steps import ProcessingStep

input_data = "s3://my-bucket/raw/churn.csv"
sklearn_processor = SKLearnProcessor(
    framework_version='1.2-1',
    role='arn:aws:iam::123456789012:role/SagemakerExecutionRole',
    instance_type='ml.m5.large',
    instance_count='1',
)
inputs = [
    ProcessingInput(source=input_data, destination="/opt/ml/processing/input"),
]
outputs = [
    ProcessingOutput(output_name="train", source="/opt/ml/processing/train"),
    ProcessingOutput(output_name="validation", source="/opt/ml/processing/validation"),
    ProcessingOutput(output_name="test", source="/opt/ml/processing/test"),
]
process_step = ProcessingStep(
    name="MyProcessStep",
    step_args=sklearn_processor.run(inputs=inputs, outputs=outputs, code='preprocessing.py'),
)


@step
def train(train_data_path, test_data_path):
    return "model"


step_train_result = train(
    process_step.properties.ProcessingOutputConfig.Outputs["train"].S3Output.S3Uri,
    process_step.properties.ProcessingOutputConfig.Outputs["test"].S3Output.S3Uri,
)

pipeline = Pipeline(name="seed-processing", steps=[step_train_result])
