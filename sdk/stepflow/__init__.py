"""stepflow: pipeline-as-code for @step-decorated Python functions.

The common names of the SageMaker ``@step`` programming model, importable from the top:
``from stepflow import step, Pipeline, ConditionStep, ParameterFloat, ...``.
"""

from importlib.metadata import PackageNotFoundError, version as _version

try:
    __version__ = _version("stepflow")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0+unknown"

from stepflow.session import PipelineSession, Session  # noqa: E402
from stepflow.workflow.condition_step import ConditionStep  # noqa: E402
from stepflow.workflow.conditions import (  # noqa: E402
    ConditionEquals,
    ConditionGreaterThan,
    ConditionGreaterThanOrEqualTo,
    ConditionIn,
    ConditionLessThan,
    ConditionLessThanOrEqualTo,
    ConditionNot,
    ConditionOr,
)
from stepflow.workflow.execution_variables import ExecutionVariables  # noqa: E402
from stepflow.workflow.fail_step import FailStep  # noqa: E402
from stepflow.workflow.function_step import DelayedReturn, step  # noqa: E402
from stepflow.workflow.functions import Join, JsonGet  # noqa: E402
from stepflow.workflow.parameters import (  # noqa: E402
    ParameterBoolean,
    ParameterFloat,
    ParameterInteger,
    ParameterString,
)
from stepflow.workflow.pipeline import Pipeline  # noqa: E402
from stepflow.workflow.retry import (  # noqa: E402
    SageMakerJobExceptionTypeEnum,
    SageMakerJobStepRetryPolicy,
    StepExceptionTypeEnum,
    StepRetryPolicy,
)
from stepflow.workflow.step_outputs import get_step  # noqa: E402
from stepflow.workflow.steps import ProcessingInput, ProcessingOutput, ProcessingStep  # noqa: E402

__all__ = [
    "__version__", "Session", "PipelineSession", "step", "DelayedReturn", "get_step",
    "Pipeline", "ConditionStep", "FailStep", "ProcessingStep", "ProcessingInput",
    "ProcessingOutput", "ParameterString", "ParameterInteger", "ParameterFloat",
    "ParameterBoolean", "ExecutionVariables", "Join", "JsonGet", "ConditionEquals",
    "ConditionGreaterThan", "ConditionGreaterThanOrEqualTo", "ConditionLessThan",
    "ConditionLessThanOrEqualTo", "ConditionIn", "ConditionNot", "ConditionOr",
    "StepRetryPolicy", "StepExceptionTypeEnum", "SageMakerJobStepRetryPolicy",
    "SageMakerJobExceptionTypeEnum",
]
