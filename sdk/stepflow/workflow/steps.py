"""Steps: the nodes of a pipeline, and the classic container step ``ProcessingStep``.

A step renders itself into the definition through a ``RenderContext`` the compiler
provides, because names, artifact folders and dependency lists are only known once the
whole graph has been seen.

What the compiler reads of a step is public and read-only: ``name``, ``explicit_name``,
``base_name()``, ``creation_order``, ``location``, ``depends_on``, ``upstream_values()``
and ``nested_steps()``. The compiler never writes into a step (automatic names: see
:mod:`stepflow.workflow.naming`).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, Union

from stepflow import layout
from stepflow.errors import SourceLocation, ValidationError
from stepflow.workflow.callsite import caller_location, project_root
from stepflow.workflow.models import _ModelArgs, _TransformArgs
from stepflow.workflow.naming import active_name
from stepflow.workflow.processing import ProcessingInput, ProcessingOutput, _ProcessingArgs
from stepflow.workflow.properties import Properties
from stepflow.workflow.training import SOURCEDIR_ARCHIVE, _TrainingArgs

if TYPE_CHECKING:
    from stepflow.workflow.function_step import DelayedReturn
    from stepflow.workflow.retry import RetryPolicy

__all__ = ["Step", "StepTypeEnum", "ProcessingStep", "ProcessingInput", "ProcessingOutput",
           "TrainingStep", "TransformStep", "RenderContext", "DependencyRef", "CacheConfig"]

# Creation order of steps in this process: the tie-breaker that makes auto names stable.
_creation_order = itertools.count()

DependencyRef = Union["Step", "DelayedReturn", str]


class StepTypeEnum(Enum):
    TRAINING = "Training"
    PROCESSING = "Processing"
    CREATE_MODEL = "Model"
    TRANSFORM = "Transform"
    CONDITION = "Condition"
    FAIL = "Fail"


class RenderContext(Protocol):
    """What the compiler tells a step while it renders the definition."""

    s3_base_uri: str
    region: str

    def step_folder_uri(self, step: Step) -> str:
        """``<s3_base>/<step>/<ts>``: where this step's shipped files are."""

    def depends_on(self, step: Step) -> list[str]:
        """The names for the step's ``DependsOn``."""

    def render_step(self, step: Step) -> dict[str, Any]:
        """A nested step's request (condition branches)."""

    def function_step_arguments(self, step: Step) -> dict[str, Any]:
        """The ``Arguments`` of an @step function step."""


class Step:
    """A named node of the pipeline graph."""

    step_type: StepTypeEnum

    def __init__(self, name: str | None, display_name: str | None = None,
                 description: str | None = None,
                 depends_on: Sequence[DependencyRef] | None = None) -> None:
        self._name = name
        self.display_name = display_name
        self.description = description
        self._depends_on: list[DependencyRef] = []
        self._order = next(_creation_order)
        self._location = caller_location()
        if depends_on is not None:
            self.add_depends_on(depends_on)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"

    @property
    def name(self) -> str:
        """The explicit name; else, while a pipeline compiles, the automatic name it chose
        (the base name plus a suffix when taken); else the base name."""
        return self._name or active_name(self) or self.base_name()

    @property
    def explicit_name(self) -> str | None:
        return self._name

    def base_name(self) -> str:
        """What an automatic name starts from (a step type without one needs ``name=``)."""
        raise ValidationError(f"{type(self).__name__} needs a name=...", location=self._location)

    @property
    def creation_order(self) -> int:
        """Creation order in this process: the tie-breaker that makes automatic names stable."""
        return self._order

    @property
    def location(self) -> SourceLocation | None:
        """The user's line that created the step, for compile errors."""
        return self._location

    @property
    def depends_on(self) -> list[DependencyRef]:
        return list(self._depends_on)

    def add_depends_on(self, step_names: Sequence[DependencyRef]) -> None:
        """Run after these steps (Step, DelayedReturn or step name); takes a list."""
        from stepflow.workflow.function_step import DelayedReturn

        if isinstance(step_names, (str, Step, DelayedReturn)) or not isinstance(
                step_names, (list, tuple)):
            raise ValidationError(
                f"add_depends_on() takes a list, e.g. add_depends_on([other]); got "
                f"{type(step_names).__name__}.", location=caller_location())
        for ref in step_names:
            if not isinstance(ref, (str, Step, DelayedReturn)):
                raise ValidationError(
                    f"add_depends_on() items must be steps, step outputs or step names; got "
                    f"{type(ref).__name__}.", location=caller_location())
            self._depends_on.append(ref)

    def upstream_values(self) -> Any:
        """Everything that may hold pipeline variables pointing at other steps."""
        return ()

    def nested_steps(self) -> list[Step]:
        """Steps compiled inside this one (condition branches), not at top level."""
        return []

    def arguments(self, ctx: RenderContext) -> dict[str, Any]:
        raise NotImplementedError

    def to_request(self, ctx: RenderContext) -> dict[str, Any]:
        request: dict[str, Any] = {"Name": self.name, "Type": self.step_type.value,
                                   "Arguments": self.arguments(ctx)}
        depends_on = ctx.depends_on(self)
        if depends_on:
            request["DependsOn"] = depends_on
        if self.display_name:
            request["DisplayName"] = self.display_name
        if self.description:
            request["Description"] = self.description
        return request


class _JobStep(Step):
    """A step SageMaker runs as a job of its own (processing, training): retry policies, a
    cache setting, and local inputs shipped in the step's folder."""

    step_args: Any
    retry_policies: list[RetryPolicy]
    cache_config: CacheConfig | None

    def upstream_values(self) -> Any:
        return self.step_args.upstream_values()

    def to_request(self, ctx: RenderContext) -> dict[str, Any]:
        request = super().to_request(ctx)
        if self.retry_policies:
            request["RetryPolicies"] = [p.to_request() for p in self.retry_policies]
        if self.cache_config is not None:
            request["CacheConfig"] = self.cache_config.config
        return request


def _local_input_uri(folder: str, name: str, path: Path) -> str:
    """A file's URI is its object, as the SDK's upload returns it; a folder's is its prefix
    with a slash, so input "data" never also matches "data2"'s objects."""
    prefix = f"{folder}/{layout.input_prefix(name)}"
    return f"{prefix}/{path.name}" if path.is_file() else f"{prefix}/"


def _files_under(root: Path) -> list[Path]:
    """The files of a folder, sorted (a stable archive), without Python's caches."""
    return [path for path in sorted(root.rglob("*")) if path.is_file() and "__pycache__" not in path.parts]


class ProcessingStep(_JobStep):
    """A container job: image, command, inputs and outputs.

    Give either ``step_args`` (what a processor's ``run(...)`` returned, as in the SDK) or
    the job directly: ``image_uri``, ``command``, ``code``, ``inputs``, ``outputs``, ...
    ``properties.ProcessingOutputConfig.Outputs["name"].S3Output.S3Uri`` may be passed to
    a @step function.
    """

    step_type = StepTypeEnum.PROCESSING

    def __init__(self, name: str, step_args: _ProcessingArgs | None = None, *,
                 processor: Any = None, display_name: str | None = None,
                 description: str | None = None,
                 inputs: Sequence[ProcessingInput] | None = None,
                 outputs: Sequence[ProcessingOutput] | None = None,
                 job_arguments: Sequence[Any] | None = None, code: str | None = None,
                 image_uri: Any = None, command: Sequence[str] | None = None,
                 role: str | None = None, instance_type: Any = None,
                 instance_count: Any = 1, volume_size_in_gb: int = 30,
                 max_runtime_in_seconds: int | None = None,
                 env: dict[str, Any] | None = None,
                 depends_on: Sequence[DependencyRef] | None = None,
                 retry_policies: Sequence[RetryPolicy] | None = None,
                 cache_config: CacheConfig | None = None, property_files: Any = None) -> None:
        super().__init__(name, display_name, description, depends_on)
        if step_args is None and processor is not None:
            step_args = processor.run(inputs=inputs, outputs=outputs, arguments=job_arguments,
                                      code=code)
        if step_args is None:
            from stepflow.workflow.processing import ScriptProcessor

            if image_uri is None:
                raise ValidationError(
                    f"ProcessingStep '{name}' needs step_args=processor.run(...) or "
                    "image_uri=... (with command=[...] and optionally code=...).",
                    location=self._location)
            step_args = ScriptProcessor(
                image_uri=image_uri, command=list(command or []), role=role,
                instance_type=instance_type, instance_count=instance_count,
                volume_size_in_gb=volume_size_in_gb,
                max_runtime_in_seconds=max_runtime_in_seconds, env=env,
            ).run(inputs=inputs, outputs=outputs, arguments=job_arguments, code=code)
        if not isinstance(step_args, _ProcessingArgs):
            raise ValidationError(
                f"ProcessingStep '{name}': step_args must be what a processor's run(...) "
                f"returns, got {type(step_args).__name__}.", location=self._location)
        self.step_args = step_args
        self.retry_policies = list(retry_policies or [])
        self.cache_config = cache_config
        self.properties = Properties(self)

    @property
    def code_path(self) -> str | None:
        """The local script shipped with the step, if any (relative to the project root)."""
        code = self.step_args.code
        return code if code is not None and "://" not in code else None

    def local_inputs(self) -> list[tuple[int, str, Path]]:
        """``(position, input name, path)`` of the inputs read from local files or folders;
        a relative path is relative to the project root."""
        found = []
        for index, item in enumerate(self.step_args.inputs):
            local = item.local_path
            if local is not None:
                found.append((index, item.channel_name(index), _resolved(local)))
        return found

    def arguments(self, ctx: RenderContext) -> dict[str, Any]:
        args = self.step_args
        code_uri = None
        if args.code is not None:
            code_uri = (args.code if self.code_path is None
                        else f"{ctx.step_folder_uri(self)}/{layout.CODE_FOLDER}")
        input_uris = {index: _local_input_uri(ctx.step_folder_uri(self), name, path)
                      for index, name, path in self.local_inputs()}
        return args.to_request(ctx.s3_base_uri, self.name, code_uri, input_uris)


def _resolved(local: str) -> Path:
    path = Path(local)
    return path if path.is_absolute() else project_root() / path


class TrainingStep(_JobStep):
    """A training job on any image: ``step_args=estimator.fit(inputs=...)`` (or, as in the
    SDK's older form, ``estimator=`` and ``inputs=``).

    ``properties.ModelArtifacts.S3ModelArtifacts`` is where the job wrote ``model.tar.gz``.
    A local channel and the ``entry_point``/``source_dir`` files ship with the step.
    """

    step_type = StepTypeEnum.TRAINING

    def __init__(self, name: str, step_args: _TrainingArgs | None = None, *,
                 estimator: Any = None, inputs: Any = None, display_name: str | None = None,
                 description: str | None = None, cache_config: CacheConfig | None = None,
                 depends_on: Sequence[DependencyRef] | None = None,
                 retry_policies: Sequence[RetryPolicy] | None = None) -> None:
        super().__init__(name, display_name, description, depends_on)
        if step_args is None and estimator is not None:
            step_args = estimator.fit(inputs=inputs)
        if not isinstance(step_args, _TrainingArgs):
            raise ValidationError(
                f"TrainingStep '{name}' needs step_args=estimator.fit(...) (or estimator=... "
                f"and inputs=...); got {type(step_args).__name__}.", location=self._location)
        self.step_args = step_args
        self.retry_policies = list(retry_policies or [])
        self.cache_config = cache_config
        self.properties = Properties(self)

    def source_files(self) -> dict[str, Path]:
        """Script mode's files by their path in ``sourcedir.tar.gz``: ``source_dir``'s
        files (else the entry point alone) and each of ``dependencies``."""
        args = self.step_args
        if args.entry_point is None:
            return {}
        files: dict[str, Path] = {}
        if args.source_dir is not None:
            root = _resolved(args.source_dir)
            for path in _files_under(root) if root.is_dir() else []:
                files[path.relative_to(root).as_posix()] = path
            files.setdefault(args.entry_point, root / args.entry_point)
        else:
            entry = _resolved(args.entry_point)
            files[entry.name] = entry
        for dependency in args.dependencies:
            dep = _resolved(dependency)
            if dep.is_dir():
                for path in _files_under(dep):
                    files[f"{dep.name}/{path.relative_to(dep).as_posix()}"] = path
            else:
                files[dep.name] = dep
        return files

    def local_inputs(self) -> list[tuple[str, str, Path]]:
        """``(channel, channel, path)`` of the channels read from local files or folders."""
        return [(channel, channel, _resolved(item.local_path))
                for channel, item in self.step_args.inputs.items() if item.local_path is not None]

    def arguments(self, ctx: RenderContext) -> dict[str, Any]:
        from stepflow.workflow.execution_variables import ExecutionVariables
        from stepflow.workflow.functions import Join

        folder = ctx.step_folder_uri(self) if (self.source_files() or self.local_inputs()) else ""
        source_uri = f"{folder}/{layout.CODE_FOLDER}/{SOURCEDIR_ARCHIVE}" if self.source_files() else None
        input_uris = {channel: _local_input_uri(folder, name, path) for channel, name, path in self.local_inputs()}
        # Per execution, as a @step function's results: <s3_base>/<exec>/<step>/output
        default_output = Join(on="/", values=[
            ctx.s3_base_uri, ExecutionVariables.PIPELINE_EXECUTION_ID, self.name, "output"])
        return self.step_args.to_request(default_output, ctx.region, source_uri, input_uris)


class _ServiceStep(Step):
    """A step SageMaker runs as a service call (a model, a transform job)."""

    def __init__(self, name: str, step_args: Any, expected: type, hint: str,
                 display_name: str | None, description: str | None,
                 depends_on: Sequence[DependencyRef] | None,
                 retry_policies: Sequence[RetryPolicy] | None) -> None:
        super().__init__(name, display_name, description, depends_on)
        if not isinstance(step_args, expected):
            raise ValidationError(
                f"{type(self).__name__} '{name}' needs step_args={hint}; got "
                f"{type(step_args).__name__}.", location=self._location)
        self.step_args: Any = step_args
        self.retry_policies = list(retry_policies or [])
        self.properties = Properties(self)

    def upstream_values(self) -> Any:
        return self.step_args.upstream_values()

    def to_request(self, ctx: RenderContext) -> dict[str, Any]:
        request = super().to_request(ctx)
        if self.retry_policies:
            request["RetryPolicies"] = [p.to_request() for p in self.retry_policies]
        return request


class ModelStep(_ServiceStep):
    """Creates a SageMaker model: ``ModelStep(name, step_args=model.create(...))``.

    As in the SDK, the step in the definition is ``<name>-CreateModel`` and
    ``properties.ModelName`` names the created model.
    """

    step_type = StepTypeEnum.CREATE_MODEL

    def __init__(self, name: str, step_args: _ModelArgs, depends_on: Sequence[DependencyRef] | None = None,
                 retry_policies: Any = None, display_name: str | None = None,
                 description: str | None = None, repack_model_step_settings: Any = None) -> None:
        policies = retry_policies if isinstance(retry_policies, (list, tuple)) else None
        super().__init__(f"{name}-CreateModel", step_args, _ModelArgs, "model.create(...)",
                         display_name, description, depends_on, policies)

    def arguments(self, ctx: RenderContext) -> dict[str, Any]:
        return self.step_args.to_request()


class TransformStep(_ServiceStep):
    """A batch transform job: ``TransformStep(name, step_args=transformer.transform(...))``."""

    step_type = StepTypeEnum.TRANSFORM

    def __init__(self, name: str, step_args: _TransformArgs, display_name: str | None = None,
                 description: str | None = None, cache_config: CacheConfig | None = None,
                 depends_on: Sequence[DependencyRef] | None = None,
                 retry_policies: Sequence[RetryPolicy] | None = None) -> None:
        super().__init__(name, step_args, _TransformArgs, "transformer.transform(...)",
                         display_name, description, depends_on, retry_policies)
        self.cache_config = cache_config

    def arguments(self, ctx: RenderContext) -> dict[str, Any]:
        from stepflow.workflow.execution_variables import ExecutionVariables
        from stepflow.workflow.functions import Join

        default_output = Join(on="/", values=[
            ctx.s3_base_uri, ExecutionVariables.PIPELINE_EXECUTION_ID, self.name, "output"])
        return self.step_args.to_request(default_output)

    def to_request(self, ctx: RenderContext) -> dict[str, Any]:
        request = super().to_request(ctx)
        if self.cache_config is not None:
            request["CacheConfig"] = self.cache_config.config
        return request


class CacheConfig:
    """Reuse a previous successful run of a step with the same arguments (service feature)."""

    def __init__(self, enable_caching: bool = False, expire_after: str | None = None) -> None:
        self.enable_caching = enable_caching
        self.expire_after = expire_after

    @property
    def config(self) -> dict[str, Any]:
        config: dict[str, Any] = {"Enabled": self.enable_caching}
        if self.expire_after is not None:
            config["ExpireAfter"] = self.expire_after
        return config
