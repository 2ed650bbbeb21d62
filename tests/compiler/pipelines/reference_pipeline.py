"""The pipeline behind /work/shared/reference_definition.json, ported to stepflow."""

from stepflow.workflow.condition_step import ConditionStep
from stepflow.workflow.conditions import ConditionLessThanOrEqualTo
from stepflow.workflow.execution_variables import ExecutionVariables
from stepflow.workflow.fail_step import FailStep
from stepflow.workflow.function_step import step
from stepflow.workflow.functions import Join
from stepflow.workflow.parameters import (
    ParameterBoolean,
    ParameterFloat,
    ParameterInteger,
    ParameterString,
)
from stepflow.workflow.pipeline import Pipeline
from stepflow.workflow.retry import (
    SageMakerJobExceptionTypeEnum,
    SageMakerJobStepRetryPolicy,
    StepExceptionTypeEnum,
    StepRetryPolicy,
)

ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/my-py311:latest"

input_uri = ParameterString(name="InputDataUri", default_value="s3://my-data/raw.csv")
threshold = ParameterFloat(name="RmseThreshold", default_value=6.0)
epochs = ParameterInteger(name="Epochs", default_value=10)
use_gpu = ParameterBoolean(name="UseGpu", default_value=False)


@step(role=ROLE, image_uri=IMAGE, instance_type="ml.m5.xlarge")
def preprocess(uri):
    """Split raw data."""
    return {"train": [1, 2, 3], "test": [4, 5]}


@step(role=ROLE, image_uri=IMAGE, instance_type="ml.m5.xlarge", environment_variables={"MY_ENV": "1"}, retry_policies=[
    StepRetryPolicy(exception_types=[StepExceptionTypeEnum.THROTTLING], max_attempts=3),
    SageMakerJobStepRetryPolicy(exception_types=[SageMakerJobExceptionTypeEnum.CAPACITY_ERROR],
                                max_attempts=2)])
def train(data, epochs, use_gpu, execution_id):
    return {"weights": [0.1] * epochs}


@step(role=ROLE, image_uri=IMAGE, instance_type="ml.m5.xlarge")
def evaluate(model, data):
    return {"rmse": 5.0}


@step(role=ROLE, image_uri=IMAGE, instance_type="ml.m5.xlarge")
def register(model, metrics):
    return True


data = preprocess(input_uri)
model = train(data, epochs, use_gpu, ExecutionVariables.PIPELINE_EXECUTION_ID)
metrics = evaluate(model, data)
check = ConditionStep(
    name="check-rmse",
    conditions=[ConditionLessThanOrEqualTo(left=metrics["rmse"], right=threshold)],
    if_steps=[register(model, metrics)],
    else_steps=[FailStep(name="rmse-too-high", error_message=Join(
        on=" ", values=["RMSE", metrics["rmse"], "exceeds", threshold]))],
)

pipeline = Pipeline(name="spec-ref-pipeline",
                    parameters=[input_uri, threshold, epochs, use_gpu], steps=[check])
