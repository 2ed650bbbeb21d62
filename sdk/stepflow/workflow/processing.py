"""Processing jobs: inputs, outputs and the processors whose ``run()`` describes a job.

As in pipelines built with the SDK, ``processor.run(...)`` does not run anything: it
returns the job's arguments for a ``ProcessingStep(step_args=...)``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from stepflow.errors import ValidationError
from stepflow.workflow.callsite import caller_location
from stepflow.workflow.entities import render
from stepflow.workflow.execution_variables import ExecutionVariables
from stepflow.workflow.functions import Join

CODE_INPUT_DIR = "/opt/ml/processing/input/code"


@dataclass
class ProcessingInput:
    source: Any
    destination: str
    input_name: str | None = None
    s3_data_type: str = "S3Prefix"
    s3_input_mode: str = "File"
    s3_data_distribution_type: str = "FullyReplicated"
    s3_compression_type: str = "None"
    app_managed: bool = False

    def channel_name(self, index: int) -> str:
        """The ``InputName``: the one given, else ``input-<n>`` by position."""
        return self.input_name or f"input-{index + 1}"

    @property
    def local_path(self) -> str | None:
        """The local file or folder ``source`` names (a path or ``file://``), else None.

        As in the SDK, a local source is uploaded when the pipeline is published (here: with
        the step's files, under ``<step>/<ts>/input/<input name>/``) and the definition
        points at the upload.
        """
        if not isinstance(self.source, str):
            return None
        if self.source.startswith("file://"):
            return self.source[len("file://"):]
        return None if "://" in self.source else self.source

    def to_request(self, index: int, source_uri: str | None = None) -> dict[str, Any]:
        """``source_uri`` replaces a local source with where it was uploaded."""
        return {"InputName": self.channel_name(index),
                "AppManaged": self.app_managed,
                "S3Input": {"S3Uri": source_uri or render(self.source), "LocalPath": self.destination,
                            "S3DataType": self.s3_data_type,
                            "S3InputMode": self.s3_input_mode,
                            "S3DataDistributionType": self.s3_data_distribution_type,
                            "S3CompressionType": self.s3_compression_type}}


@dataclass
class ProcessingOutput:
    source: str
    destination: Any = None
    output_name: str | None = None
    s3_upload_mode: str = "EndOfJob"
    app_managed: bool = False

    def to_request(self, index: int, s3_base_uri: str, step_name: str) -> dict[str, Any]:
        name = self.output_name or f"output-{index + 1}"
        destination = self.destination
        if destination is None:
            # Per execution, next to the step's results: <s3_base>/<exec>/<step>/output/<name>
            destination = Join(on="/", values=[
                s3_base_uri, ExecutionVariables.PIPELINE_EXECUTION_ID, step_name, "output", name])
        return {"OutputName": name, "AppManaged": self.app_managed,
                "S3Output": {"S3Uri": render(destination), "LocalPath": self.source,
                             "S3UploadMode": self.s3_upload_mode}}


@dataclass
class _ProcessingArgs:
    """A processing job described by ``Processor.run()``, rendered when compiled."""

    image_uri: Any
    entrypoint: list[Any]
    role: str | None
    instance_type: Any
    instance_count: Any
    volume_size_in_gb: int
    max_runtime_in_seconds: int | None
    env: dict[str, Any]
    inputs: list[ProcessingInput] = field(default_factory=list)
    outputs: list[ProcessingOutput] = field(default_factory=list)
    arguments: list[Any] = field(default_factory=list)
    code: str | None = None

    def upstream_values(self) -> list[Any]:
        return [self.image_uri, self.instance_type, self.instance_count, self.env,
                self.arguments, [i.source for i in self.inputs],
                [o.destination for o in self.outputs]]

    def to_request(self, s3_base_uri: str, step_name: str, code_uri: str | None,
                   input_uris: dict[int, str] | None = None) -> dict[str, Any]:
        """``input_uris``: by position, where local inputs were uploaded."""
        from stepflow.workflow.defaults import DEFAULT_INSTANCE_TYPE, DEFAULT_ROLE_ARN

        uploaded = input_uris or {}
        inputs = [i.to_request(n, uploaded.get(n)) for n, i in enumerate(self.inputs)]
        entrypoint = list(self.entrypoint)
        if code_uri is not None and self.code is not None:
            inputs.append(ProcessingInput(source=code_uri, destination=CODE_INPUT_DIR,
                                          input_name="code").to_request(len(inputs)))
            entrypoint.append(f"{CODE_INPUT_DIR}/{os.path.basename(self.code)}")
        request: dict[str, Any] = {}
        if inputs:
            request["ProcessingInputs"] = inputs
        if self.outputs:
            request["ProcessingOutputConfig"] = {"Outputs": [
                o.to_request(n, s3_base_uri, step_name) for n, o in enumerate(self.outputs)]}
        request["ProcessingResources"] = {"ClusterConfig": {
            "InstanceType": render(DEFAULT_INSTANCE_TYPE if self.instance_type is None
                                   else self.instance_type),
            "InstanceCount": render(self.instance_count),
            "VolumeSizeInGB": self.volume_size_in_gb}}
        if self.max_runtime_in_seconds is not None:
            request["StoppingCondition"] = {"MaxRuntimeInSeconds": self.max_runtime_in_seconds}
        app: dict[str, Any] = {"ImageUri": render(self.image_uri)}
        if entrypoint:
            app["ContainerEntrypoint"] = render(entrypoint)
        if self.arguments:
            app["ContainerArguments"] = render(self.arguments)
        request["AppSpecification"] = app
        if self.env:
            request["Environment"] = render(self.env)
        request["RoleArn"] = self.role or DEFAULT_ROLE_ARN
        return request


class Processor:
    """A container image and the resources to run it with."""

    def __init__(self, role: str | None = None, image_uri: Any = None,
                 instance_count: Any = 1, instance_type: Any = None,
                 entrypoint: Sequence[str] | None = None, volume_size_in_gb: int = 30,
                 max_runtime_in_seconds: int | None = None,
                 env: dict[str, Any] | None = None, base_job_name: str | None = None,
                 sagemaker_session: Any = None, **_ignored: Any) -> None:
        if image_uri is None:
            raise ValidationError(f"{type(self).__name__} needs image_uri=...",
                                  location=caller_location())
        self.role = role
        self.image_uri = image_uri
        self.instance_count = _count(instance_count)
        self.instance_type = instance_type
        self.entrypoint = list(entrypoint or [])
        self.volume_size_in_gb = volume_size_in_gb
        self.max_runtime_in_seconds = max_runtime_in_seconds
        self.env = dict(env or {})

    def run(self, inputs: Sequence[ProcessingInput] | None = None,
            outputs: Sequence[ProcessingOutput] | None = None,
            arguments: Sequence[Any] | None = None, code: str | None = None,
            **_ignored: Any) -> _ProcessingArgs:
        return _ProcessingArgs(
            image_uri=self.image_uri, entrypoint=list(self.entrypoint), role=self.role,
            instance_type=self.instance_type, instance_count=self.instance_count,
            volume_size_in_gb=self.volume_size_in_gb,
            max_runtime_in_seconds=self.max_runtime_in_seconds, env=dict(self.env),
            inputs=list(inputs or []), outputs=list(outputs or []),
            arguments=list(arguments or []), code=code)


class ScriptProcessor(Processor):
    """Runs ``command + [code]`` in the image: e.g. ``command=["python3"]``."""

    def __init__(self, command: Sequence[str] | None = None, **kwargs: Any) -> None:
        super().__init__(entrypoint=list(command or []), **kwargs)


# The scikit-learn framework images' registry accounts, by region (the SDK's table).
_SKLEARN_ACCOUNTS = {
    "us-east-1": "683313688378", "us-east-2": "257758044811", "us-west-1": "746614075791",
    "us-west-2": "246618743249", "eu-west-1": "141502667606", "eu-central-1": "492215442770",
    "ap-northeast-1": "354813040037", "ap-southeast-2": "783357654285",
}


class SKLearnProcessor(ScriptProcessor):
    """A ScriptProcessor on the scikit-learn framework image of the given version."""

    def __init__(self, framework_version: str, role: str | None = None,
                 instance_type: Any = None, instance_count: Any = 1,
                 command: Sequence[str] | None = None, image_uri: Any = None,
                 region: str | None = None, **kwargs: Any) -> None:
        if image_uri is None:
            from stepflow.workflow.defaults import default_region

            region = region or default_region()
            account = _SKLEARN_ACCOUNTS.get(region)
            if account is None:
                raise ValidationError(
                    f"No scikit-learn image is known for region {region}; pass "
                    "image_uri=... to SKLearnProcessor.", location=caller_location())
            image_uri = (f"{account}.dkr.ecr.{region}.amazonaws.com/"
                         f"sagemaker-scikit-learn:{framework_version}-cpu-py3")
        super().__init__(command=list(command or ["python3"]), role=role, image_uri=image_uri,
                         instance_type=instance_type, instance_count=instance_count, **kwargs)


def _count(value: Any) -> Any:
    """Instance counts arrive as strings in ported code (the seed passes '1')."""
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            raise ValidationError(f"instance_count must be a whole number, got {value!r}.",
                                  location=caller_location()) from None
    return value
