"""stepflow: pipeline-as-code for @step-decorated Python functions.

The common names of the SageMaker ``@step`` programming model, importable from the top:
``from stepflow import step, Pipeline, ConditionStep, ParameterFloat, ...``, and the
submodules ``sagemaker`` makes attributes of itself (``stepflow.session``,
``stepflow.utils``, ``stepflow.s3``, ...). They are loaded on first use, so processes that
only need a corner of the package (the step runtime, the sandboxed build) do not pay for
importing all of it.
"""

from importlib import import_module as _import_module

_EXPORTS = {
    'Session': 'stepflow.session',
    'get_execution_role': 'stepflow.session',
    'PipelineSession': 'stepflow.workflow.pipeline_context',
    'LocalPipelineSession': 'stepflow.workflow.pipeline_context',
    'ConditionStep': 'stepflow.workflow.condition_step',
    'ConditionEquals': 'stepflow.workflow.conditions',
    'ConditionGreaterThan': 'stepflow.workflow.conditions',
    'ConditionGreaterThanOrEqualTo': 'stepflow.workflow.conditions',
    'ConditionIn': 'stepflow.workflow.conditions',
    'ConditionLessThan': 'stepflow.workflow.conditions',
    'ConditionLessThanOrEqualTo': 'stepflow.workflow.conditions',
    'ConditionNot': 'stepflow.workflow.conditions',
    'ConditionOr': 'stepflow.workflow.conditions',
    'ExecutionVariables': 'stepflow.workflow.execution_variables',
    'FailStep': 'stepflow.workflow.fail_step',
    'DelayedReturn': 'stepflow.workflow.function_step',
    'step': 'stepflow.workflow.function_step',
    'Join': 'stepflow.workflow.functions',
    'JsonGet': 'stepflow.workflow.functions',
    'ParameterBoolean': 'stepflow.workflow.parameters',
    'ParameterFloat': 'stepflow.workflow.parameters',
    'ParameterInteger': 'stepflow.workflow.parameters',
    'ParameterString': 'stepflow.workflow.parameters',
    'Pipeline': 'stepflow.workflow.pipeline',
    'SageMakerJobExceptionTypeEnum': 'stepflow.workflow.retry',
    'SageMakerJobStepRetryPolicy': 'stepflow.workflow.retry',
    'StepExceptionTypeEnum': 'stepflow.workflow.retry',
    'StepRetryPolicy': 'stepflow.workflow.retry',
    'get_step': 'stepflow.workflow.step_outputs',
    'ProcessingInput': 'stepflow.workflow.steps',
    'ProcessingOutput': 'stepflow.workflow.steps',
    'ProcessingStep': 'stepflow.workflow.steps',
    'TrainingStep': 'stepflow.workflow.steps',
    'Processor': 'stepflow.processing',
    'ScriptProcessor': 'stepflow.processing',
    'TrainingInput': 'stepflow.inputs',
    'Model': 'stepflow.model',
}

#: Submodules reachable as attributes after ``import stepflow``, as ``sagemaker.session`` is.
_SUBMODULES = ("session", "utils", "s3", "processing", "workflow", "estimator", "inputs", "model",
               "transformer")

__all__ = ["__version__", *_EXPORTS]


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("stepflow")
    except PackageNotFoundError:  # running from a source tree without an install
        return "0.0.0+unknown"


def __getattr__(name: str):
    if name == "__version__":
        globals()[name] = _version()
        return globals()[name]
    if name in _SUBMODULES:
        globals()[name] = _import_module(f"stepflow.{name}")
        return globals()[name]
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'stepflow' has no attribute {name!r}")
    value = getattr(_import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
