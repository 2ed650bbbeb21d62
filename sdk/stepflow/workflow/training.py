"""Training jobs: channels and the generic ``Estimator`` whose ``fit()`` describes a job.

As with processors, ``estimator.fit(...)`` runs nothing: in a pipeline it returns the job's
arguments for a ``TrainingStep(step_args=...)`` (the SDK's ``PipelineSession`` behaviour).
``entry_point`` (with ``source_dir`` and ``dependencies``) is script mode: the files ship as
``sourcedir.tar.gz`` with the step and the SDK's ``sagemaker_program`` and
``sagemaker_submit_directory`` hyperparameters name them, for images that run the
SageMaker training toolkit.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from stepflow.errors import ValidationError
from stepflow.workflow.callsite import caller_location
from stepflow.workflow.entities import PipelineVariable, render

#: The SDK's script-mode hyperparameter names.
SCRIPT_PARAM = "sagemaker_program"
DIR_PARAM = "sagemaker_submit_directory"
LOG_LEVEL_PARAM = "sagemaker_container_log_level"
REGION_PARAM = "sagemaker_region"
SOURCEDIR_ARCHIVE = "sourcedir.tar.gz"


class TrainingInput:
    """One channel of a training job (``sagemaker.inputs.TrainingInput``).

    ``s3_data`` may be an ``s3://`` URI, a pipeline variable, or a local path, uploaded at
    publish with the step (as ``ProcessingInput`` sources are).
    """

    def __init__(self, s3_data: Any, distribution: str | None = None,
                 compression: str | None = None, content_type: str | None = None,
                 record_wrapping: str | None = None, s3_data_type: str = "S3Prefix",
                 input_mode: str | None = None, attribute_names: list[str] | None = None,
                 target_attribute_name: str | None = None, shuffle_config: Any = None,
                 **_unused: Any) -> None:
        self.s3_data = s3_data
        self.config: dict[str, Any] = {"DataSource": {"S3DataSource": {
            "S3DataType": s3_data_type, "S3Uri": s3_data}}}
        source = self.config["DataSource"]["S3DataSource"]
        if not (target_attribute_name or distribution):
            distribution = "FullyReplicated"
        if distribution is not None:
            source["S3DataDistributionType"] = distribution
        if attribute_names is not None:
            source["AttributeNames"] = attribute_names
        if compression is not None:
            self.config["CompressionType"] = compression
        if content_type is not None:
            self.config["ContentType"] = content_type
        if record_wrapping is not None:
            self.config["RecordWrapperType"] = record_wrapping
        if input_mode is not None:
            self.config["InputMode"] = input_mode
        if target_attribute_name is not None:
            self.config["TargetAttributeName"] = target_attribute_name
        if shuffle_config is not None:
            self.config["ShuffleConfig"] = {"Seed": getattr(shuffle_config, "seed", shuffle_config)}

    @property
    def local_path(self) -> str | None:
        """The local file or folder ``s3_data`` names (a path or ``file://``), else None."""
        if not isinstance(self.s3_data, str):
            return None
        if self.s3_data.startswith("file://"):
            return self.s3_data[len("file://"):]
        return None if "://" in self.s3_data else self.s3_data

    def to_request(self, channel: str, source_uri: str | None = None) -> dict[str, Any]:
        request = render(self.config)
        if source_uri is not None:
            request["DataSource"]["S3DataSource"]["S3Uri"] = source_uri
        return {"ChannelName": channel, **request}


@dataclass
class _TrainingArgs:
    """A training job described by ``Estimator.fit()``, rendered when compiled."""

    image_uri: Any
    role: str | None
    instance_type: Any
    instance_count: Any
    volume_size: Any
    max_run: Any
    input_mode: Any
    output_path: Any
    hyperparameters: dict[str, Any]
    environment: dict[str, Any]
    entry_point: str | None = None
    source_dir: str | None = None
    dependencies: list[str] = field(default_factory=list)
    container_entry_point: list[str] | None = None
    container_arguments: list[str] | None = None
    inputs: dict[str, TrainingInput] = field(default_factory=dict)

    def upstream_values(self) -> list[Any]:
        return [self.image_uri, self.instance_type, self.instance_count, self.volume_size,
                self.max_run, self.output_path, self.hyperparameters, self.environment,
                [i.s3_data for i in self.inputs.values()]]

    def to_request(self, default_output: Any, region: str, source_uri: str | None,
                   input_uris: Mapping[str, str]) -> dict[str, Any]:
        """``source_uri``: where ``sourcedir.tar.gz`` was published (script mode);
        ``input_uris``: by channel, where local channels were uploaded."""
        from stepflow.workflow.defaults import DEFAULT_INSTANCE_TYPE, DEFAULT_ROLE_ARN

        algorithm: dict[str, Any] = {"TrainingImage": render(self.image_uri),
                                     "TrainingInputMode": render(self.input_mode)}
        if self.container_entry_point:
            algorithm["ContainerEntrypoint"] = list(self.container_entry_point)
        if self.container_arguments:
            algorithm["ContainerArguments"] = list(self.container_arguments)
        request: dict[str, Any] = {
            "AlgorithmSpecification": algorithm,
            "OutputDataConfig": {"S3OutputPath": render(
                default_output if self.output_path is None else self.output_path)},
            "StoppingCondition": {"MaxRuntimeInSeconds": render(self.max_run)},
            "ResourceConfig": {"VolumeSizeInGB": render(self.volume_size),
                               "InstanceCount": render(self.instance_count),
                               "InstanceType": render(DEFAULT_INSTANCE_TYPE if self.instance_type is None
                                                     else self.instance_type)},
            "RoleArn": DEFAULT_ROLE_ARN if self.role is None else render(self.role),
        }
        if self.inputs:
            request["InputDataConfig"] = [item.to_request(channel, input_uris.get(channel))
                                          for channel, item in self.inputs.items()]
        hyperparameters = {str(k): _hyperparameter(v) for k, v in self.hyperparameters.items()}
        if self.entry_point is not None and source_uri is not None:
            script = self.entry_point.replace("\\", "/").rsplit("/", 1)[-1] \
                if self.source_dir is None else self.entry_point
            hyperparameters.update({SCRIPT_PARAM: json.dumps(script),
                                    DIR_PARAM: json.dumps(source_uri),
                                    LOG_LEVEL_PARAM: json.dumps(20),
                                    REGION_PARAM: json.dumps(region)})
        if hyperparameters:
            request["HyperParameters"] = hyperparameters
        if self.environment:
            request["Environment"] = render(self.environment)
        return request


def _hyperparameter(value: Any) -> Any:
    """Hyperparameters are strings in the API; a pipeline variable becomes its string form."""
    if isinstance(value, PipelineVariable):
        return value.to_string().expr
    return value if isinstance(value, str) else json.dumps(value)


class Estimator:
    """A generic estimator: any training image, optionally running a script (script mode)."""

    def __init__(self, image_uri: Any, role: str | None = None, instance_count: Any = 1,
                 instance_type: Any = None, volume_size: Any = 30, max_run: Any = 24 * 60 * 60,
                 input_mode: Any = "File", output_path: Any = None,
                 base_job_name: str | None = None, sagemaker_session: Any = None,
                 hyperparameters: Mapping[str, Any] | None = None,
                 environment: Mapping[str, Any] | None = None,
                 entry_point: str | None = None, source_dir: str | None = None,
                 dependencies: Sequence[str] | None = None,
                 container_entry_point: Sequence[str] | None = None,
                 container_arguments: Sequence[str] | None = None, **_unused: Any) -> None:
        if image_uri is None:
            raise ValidationError("Estimator needs image_uri=...", location=caller_location())
        if isinstance(entry_point, PipelineVariable) or isinstance(source_dir, PipelineVariable):
            raise ValidationError(
                "Estimator entry_point= and source_dir= must be local paths: the files ship "
                "with the step when it is published.", location=caller_location())
        if source_dir is not None and "://" in source_dir:
            raise ValidationError(
                f"Estimator source_dir={source_dir!r}: only a local folder is supported (its "
                "files ship with the step). Download it first or give the folder.",
                location=caller_location())
        self.image_uri = image_uri
        self.role = role
        self.instance_count = instance_count
        self.instance_type = instance_type
        self.volume_size = volume_size
        self.max_run = max_run
        self.input_mode = input_mode
        self.output_path = output_path
        self.base_job_name = base_job_name
        self.sagemaker_session = sagemaker_session
        self._hyperparameters = dict(hyperparameters or {})
        self.environment = dict(environment or {})
        self.entry_point = entry_point
        self.source_dir = source_dir
        self.dependencies = list(dependencies or [])
        self.container_entry_point = list(container_entry_point) if container_entry_point else None
        self.container_arguments = list(container_arguments) if container_arguments else None

    def set_hyperparameters(self, **kwargs: Any) -> None:
        self._hyperparameters.update(kwargs)

    def hyperparameters(self) -> dict[str, Any]:
        return dict(self._hyperparameters)

    def fit(self, inputs: Any = None, wait: bool = True, logs: Any = "All",
            job_name: str | None = None, experiment_config: Any = None) -> _TrainingArgs:
        """The job's arguments for ``TrainingStep(step_args=...)``; ``inputs`` is an S3 URI,
        a ``TrainingInput``, or a dict of channel name → either (the SDK's forms)."""
        return _TrainingArgs(
            image_uri=self.image_uri, role=self.role, instance_type=self.instance_type,
            instance_count=self.instance_count, volume_size=self.volume_size,
            max_run=self.max_run, input_mode=self.input_mode, output_path=self.output_path,
            hyperparameters=self.hyperparameters(), environment=dict(self.environment),
            entry_point=self.entry_point, source_dir=self.source_dir,
            dependencies=list(self.dependencies),
            container_entry_point=self.container_entry_point,
            container_arguments=self.container_arguments, inputs=_channels(inputs))


def _channels(inputs: Any) -> dict[str, TrainingInput]:
    if inputs is None:
        return {}
    if isinstance(inputs, Mapping):
        return {str(name): value if isinstance(value, TrainingInput) else TrainingInput(value)
                for name, value in inputs.items()}
    if isinstance(inputs, TrainingInput):
        return {"training": inputs}
    if isinstance(inputs, (str, PipelineVariable)):
        return {"training": TrainingInput(inputs)}
    raise ValidationError(
        f"fit(inputs=...) takes an S3 URI, a TrainingInput or a dict of channel name to "
        f"either; got {type(inputs).__name__}.", location=caller_location())
