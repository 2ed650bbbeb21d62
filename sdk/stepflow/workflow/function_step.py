"""The ``@step`` decorator and ``DelayedReturn`` (docs/SAGEMAKER-COMPATIBILITY.md, "The
@step decorator" and "Step outputs and arguments").

Calling a decorated function runs nothing: it pickles the function and the arguments
(as SageMaker's SDK does, so later changes to globals or arguments do not change what
ships; :mod:`stepflow.workflow.capture`), records them with the call site in a step and
returns a ``DelayedReturn``, a proxy for the result.
"""

from __future__ import annotations

import functools
import inspect
import re
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from stepflow import layout
from stepflow.errors import SourceLocation, ValidationError
from stepflow.workflow import placeholders
from stepflow.workflow.callsite import caller_location
from stepflow.workflow.capture import CapturedCall, capture
from stepflow.workflow.entities import PipelineVariable
from stepflow.workflow.functions import Join, JsonGet
from stepflow.workflow.retry import RetryPolicy
from stepflow.workflow.step_outputs import StepOutput
from stepflow.workflow.steps import RenderContext, Step, StepTypeEnum

__all__ = ["step", "DelayedReturn", "FunctionStep", "StepSettings"]

_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9\-_]")


@dataclass(frozen=True)
class StepSettings:
    """The decorator's keywords (docs/SAGEMAKER-COMPATIBILITY.md, "The @step decorator").

    None means: from configuration, else default.
    """

    name: str | None = None
    display_name: str | None = None
    description: str | None = None
    retry_policies: Sequence[RetryPolicy] | None = None
    dependencies: str | None = None
    pre_execution_commands: Sequence[str] | None = None
    pre_execution_script: str | None = None
    environment_variables: dict[str, Any] | None = None
    image_uri: Any = None
    instance_count: Any = 1
    instance_type: Any = None
    job_conda_env: Any = None
    job_name_prefix: str | None = None
    keep_alive_period_in_seconds: Any = 0
    max_retry_attempts: Any = 1
    max_runtime_in_seconds: Any = 86400
    role: str | None = None
    security_group_ids: Sequence[Any] | None = None
    subnets: Sequence[Any] | None = None
    tags: Sequence[dict[str, Any]] | None = None
    volume_kms_key: Any = None
    volume_size: Any = 30
    encrypt_inter_container_traffic: Any = None
    spark_config: Any = None
    use_spot_instances: Any = False
    max_wait_time_in_seconds: Any = None
    # Not on the SDK's @step (config only there, issue #4396); accepted here too.
    include_local_workdir: bool | None = None
    custom_file_filter: Any = None
    location: SourceLocation | None = field(default=None, compare=False)


def step(_func: Callable[..., Any] | None = None, *, name: str | None = None,
         display_name: str | None = None, description: str | None = None,
         retry_policies: Sequence[RetryPolicy] | None = None,
         dependencies: str | None = None,
         pre_execution_commands: Sequence[str] | None = None,
         pre_execution_script: str | None = None,
         environment_variables: dict[str, Any] | None = None, image_uri: Any = None,
         instance_count: Any = 1, instance_type: Any = None, job_conda_env: Any = None,
         job_name_prefix: str | None = None, keep_alive_period_in_seconds: Any = 0,
         max_retry_attempts: Any = 1, max_runtime_in_seconds: Any = 86400,
         role: str | None = None, security_group_ids: Sequence[Any] | None = None,
         subnets: Sequence[Any] | None = None, tags: Sequence[dict[str, Any]] | None = None,
         volume_kms_key: Any = None, volume_size: Any = 30,
         encrypt_inter_container_traffic: Any = None, spark_config: Any = None,
         use_spot_instances: Any = False, max_wait_time_in_seconds: Any = None,
         include_local_workdir: bool | None = None, custom_file_filter: Any = None) -> Any:
    """Make a function a pipeline step: bare ``@step`` or ``@step(name=..., ...)``."""
    location = caller_location()
    if dependencies == "auto_capture":
        raise ValidationError(
            "dependencies='auto_capture' is not supported for pipeline steps: give the path "
            "of a requirements.txt or environment.yml file.", location=location)
    _check_compile_time_keywords(location, name=name, display_name=display_name,
                                 description=description, retry_policies=retry_policies,
                                 dependencies=dependencies,
                                 pre_execution_commands=pre_execution_commands,
                                 pre_execution_script=pre_execution_script,
                                 job_name_prefix=job_name_prefix, role=role,
                                 environment_variables=environment_variables,
                                 security_group_ids=security_group_ids, subnets=subnets,
                                 tags=tags, include_local_workdir=include_local_workdir,
                                 custom_file_filter=custom_file_filter)
    if pre_execution_commands is not None and pre_execution_script is not None:
        raise ValidationError(
            "Only one of pre_execution_commands or pre_execution_script can be specified: "
            "drop one of them.", location=location)
    if spark_config is not None:
        raise ValidationError(
            "spark_config is not supported: stepflow runs @step functions on its own Python "
            "runtime. Remove spark_config (start Spark inside the function if you need it).",
            location=location)
    settings = StepSettings(
        name=name, display_name=display_name, description=description,
        retry_policies=retry_policies, dependencies=dependencies,
        pre_execution_commands=pre_execution_commands,
        pre_execution_script=pre_execution_script,
        environment_variables=environment_variables, image_uri=image_uri,
        instance_count=instance_count, instance_type=instance_type,
        job_conda_env=job_conda_env, job_name_prefix=job_name_prefix,
        keep_alive_period_in_seconds=keep_alive_period_in_seconds,
        max_retry_attempts=max_retry_attempts, max_runtime_in_seconds=max_runtime_in_seconds,
        role=role, security_group_ids=security_group_ids, subnets=subnets, tags=tags,
        volume_kms_key=volume_kms_key, volume_size=volume_size,
        encrypt_inter_container_traffic=encrypt_inter_container_traffic,
        spark_config=spark_config, use_spot_instances=use_spot_instances,
        max_wait_time_in_seconds=max_wait_time_in_seconds,
        include_local_workdir=include_local_workdir, custom_file_filter=custom_file_filter,
        location=location)

    def decorate(func: Callable[..., Any]) -> Callable[..., DelayedReturn]:
        signature = inspect.signature(func)
        returns_sequence = _returns_sequence(func)

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> DelayedReturn:
            try:
                signature.bind(*args, **kwargs)
            except TypeError as exc:
                raise TypeError(f"{func.__name__}(): {exc}") from None
            function_step = _FunctionStep(func, settings, args, kwargs)
            if returns_sequence:
                return _DelayedSequence(function_step)
            return DelayedReturn(function_step)

        wrapper._stepflow_settings = settings  # type: ignore[attr-defined]
        return wrapper

    return decorate(_func) if _func is not None else decorate


#: Keywords that may be pipeline variables (the SDK's decorator types): rendered as
#: ``{"Get": ...}`` and resolved when the execution runs.
VARIABLE_KEYWORDS = ("image_uri", "instance_count", "instance_type", "job_conda_env",
                     "keep_alive_period_in_seconds", "max_retry_attempts",
                     "max_runtime_in_seconds", "volume_kms_key", "volume_size",
                     "encrypt_inter_container_traffic", "use_spot_instances",
                     "max_wait_time_in_seconds")
#: Keywords whose items or values (not the whole) may be pipeline variables.
_VARIABLE_ITEMS = ("environment_variables", "security_group_ids", "subnets", "tags")


def _check_compile_time_keywords(location: SourceLocation | None, **keywords: Any) -> None:
    """Refuse a pipeline variable where the compiler needs the value itself."""
    for keyword, value in keywords.items():
        if not isinstance(value, PipelineVariable):
            continue
        if keyword in _VARIABLE_ITEMS:
            raise ValidationError(
                f"@step({keyword}=...) got a pipeline variable ({value!r}); give a "
                f"{'dict' if keyword == 'environment_variables' else 'list'} whose "
                f"{'values' if keyword == 'environment_variables' else 'items'} may be "
                "pipeline variables.", location=location, reason="PipelineVariableMisused")
        raise ValidationError(
            f"@step({keyword}=...) cannot be a pipeline variable ({value!r}): the compiler "
            "needs its value. Pipeline variables are accepted by "
            f"{', '.join(VARIABLE_KEYWORDS)}, the values of environment_variables and the "
            "items of subnets and security_group_ids.",
            location=location, reason="PipelineVariableMisused")
    environment = keywords.get("environment_variables")
    if environment is not None and (not isinstance(environment, dict)
                                    or not all(isinstance(k, str) for k in environment)):
        raise ValidationError(
            "@step(environment_variables=...) must be a dict of variable names (str) to values "
            f"(str or pipeline variables), got {environment!r}.", location=location)


def _returns_sequence(func: Callable[..., Any]) -> bool:
    """True when the return annotation is a tuple or list: then only int indexes make sense."""
    try:
        annotation = typing.get_type_hints(func).get("return")
    except Exception:  # unresolvable forward references: fall back to the raw annotation
        annotation = getattr(func, "__annotations__", {}).get("return")
    origin = typing.get_origin(annotation) or annotation
    return origin in (tuple, list)


class _FunctionStep(Step):
    """One call of an @step function; rendered as a SageMaker training job
    (docs/SAGEMAKER-COMPATIBILITY.md, "Function steps")."""

    step_type = StepTypeEnum.TRAINING

    def __init__(self, func: Callable[..., Any], settings: StepSettings,
                 args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        super().__init__(settings.name,
                         display_name=settings.display_name
                         or f"{func.__module__}.{func.__name__}",
                         description=settings.description or _docstring(func))
        self.func = func
        self.settings = settings
        self.args = args
        self.kwargs = kwargs
        for position, value in self.arguments_by_name():
            if isinstance(value, (Join, JsonGet)):
                raise ValidationError(
                    f"Argument {position} of {func.__name__}() is a {type(value).__name__}, "
                    "which is not supported for function arguments: pass the underlying "
                    "step output or parameter and combine the values inside the function.",
                    location=self._location)
        labelled = self.arguments_by_name()
        self.captured: CapturedCall = capture(func, args, kwargs, labels=[l for l, _ in labelled],
                                              location=self._location)
        """The pickled function and arguments, as they were at the call."""
        seen: set[int] = set()
        for _, value in labelled:
            if isinstance(value, StepOutput) and id(value._step) not in seen:
                seen.add(id(value._step))
                self._depends_on.append(value._step)

    def base_name(self) -> str:
        return _NAME_UNSAFE.sub("-", self.func.__name__).strip("-_")[:64] or "step"

    def arguments_by_name(self) -> list[tuple[str, Any]]:
        """Top-level arguments labelled for messages: ``'x'`` for keywords, ``#1`` for positions."""
        try:
            bound = inspect.signature(self.func).bind(*self.args, **self.kwargs)
            names = list(bound.arguments)
        except (TypeError, ValueError):
            names = []
        labelled = [(f"'{names[i]}'" if i < len(names) else f"#{i + 1}", v)
                    for i, v in enumerate(self.args)]
        return labelled + [(f"'{k}'", v) for k, v in self.kwargs.items()]

    @property
    def depends_on(self) -> list[Any]:
        return list(self._depends_on)

    @depends_on.setter
    def depends_on(self, value: Any) -> None:
        raise ValidationError(
            "Cannot set depends_on of an @step function step: use "
            "get_step(output).add_depends_on([...]) to extend the list.",
            location=caller_location())

    @property
    def properties(self) -> Any:
        raise ValidationError(
            "An @step function step has no properties: pass its return value (or an index "
            "of it, e.g. result['rmse']) to other steps and conditions instead.",
            location=caller_location())

    @property
    def retry_policies(self) -> list[RetryPolicy]:
        return list(self.settings.retry_policies or [])

    def upstream_values(self) -> Any:
        s = self.settings
        return [list(self.args), dict(self.kwargs), s.image_uri, s.instance_type,
                s.instance_count, s.environment_variables, s.job_conda_env,
                s.max_runtime_in_seconds, s.volume_size, s.volume_kms_key]

    def arguments(self, ctx: RenderContext) -> dict[str, Any]:
        return ctx.function_step_arguments(self)

    def to_request(self, ctx: RenderContext) -> dict[str, Any]:
        request = super().to_request(ctx)
        if self.retry_policies:
            request["RetryPolicies"] = [p.to_request() for p in self.retry_policies]
        return request


FunctionStep = _FunctionStep
"""The public name of an @step call's step (``_FunctionStep`` is the SageMaker SDK's)."""


def _docstring(func: Callable[..., Any]) -> str | None:
    """The cleaned docstring; never a file path (the SDK falls back to the module's path)."""
    doc = inspect.getdoc(func)
    return doc[:3072] if doc else None


class DelayedReturn(StepOutput):
    """The future return value of an @step call; index it with ``[]`` for parts of it."""

    _step: _FunctionStep

    def __init__(self, function_step: _FunctionStep,
                 reference_path: tuple[tuple[str, Any], ...] = ()) -> None:
        super().__init__(function_step)
        self._reference_path = reference_path

    def __repr__(self) -> str:
        return f"DelayedReturn(step={self._step.name!r}, path={self._json_path()!r})"

    def __getitem__(self, key: Any) -> DelayedReturn:
        if isinstance(key, slice) or not isinstance(key, (int, str)):
            raise ValidationError(
                f"Index a step's return value with an int or a str, got {type(key).__name__}; "
                "slice or transform the value inside a @step function instead.",
                location=caller_location())
        return type(self)(self._step, self._reference_path + (("__getitem__", key),))

    def _json_path(self) -> str:
        path = "Result"
        for _, key in self._reference_path:
            path += f"[{key}]" if isinstance(key, int) else f"['{key}']"
        return path

    @property
    def expr(self) -> dict[str, Any]:
        return {"Std:JsonGet": {
            "S3Uri": {"Std:Join": {"On": "/", "Values": [
                {"Get": f"Steps.{self._step.name}.OutputDataConfig.S3OutputPath"},
                layout.RESULTS_DOCUMENT]}},
            "Path": self._json_path()}}

    @property
    def output_path_reference(self) -> str:
        return f"Steps.{self._step.name}.OutputDataConfig.S3OutputPath"

    def placeholder(self) -> placeholders._DelayedReturn:
        return placeholders._DelayedReturn(
            uri=placeholders._Properties(self.output_path_reference),
            reference_path=self._reference_path)


class _DelayedSequence(DelayedReturn):
    """A return value annotated as tuple or list: only integer indexes."""

    def __getitem__(self, key: Any) -> DelayedReturn:
        if not isinstance(key, int) or isinstance(key, bool):
            raise ValidationError(
                f"Expected an integer index into the tuple/list returned by step "
                f"'{self._step.name}', got {key!r}.", location=caller_location())
        return DelayedReturn(self._step, self._reference_path + (("__getitem__", key),))
