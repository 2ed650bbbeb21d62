"""Models and batch transform: ``Model.create()`` and ``Transformer.transform()`` describe
a SageMaker CreateModel request and a transform job for ``ModelStep``/``TransformStep``.

Neither reduces to "run this image with these arguments": a model is a SageMaker resource
and a transform job runs the model's server and feeds it records. They compile to
SageMaker's definition shapes, and only a backend that drives SageMaker runs them
(:mod:`stepflow.backends.capabilities` refuses them elsewhere at publish).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from stepflow.errors import ValidationError
from stepflow.workflow.callsite import caller_location
from stepflow.workflow.entities import render


@dataclass
class _ModelArgs:
    image_uri: Any
    model_data: Any
    role: Any
    env: dict[str, Any] = field(default_factory=dict)

    def upstream_values(self) -> list[Any]:
        return [self.image_uri, self.model_data, self.env]

    def to_request(self) -> dict[str, Any]:
        from stepflow.workflow.defaults import DEFAULT_ROLE_ARN

        container: dict[str, Any] = {"Image": render(self.image_uri), "Environment": render(self.env)}
        if self.model_data is not None:
            container["ModelDataUrl"] = render(self.model_data)
        return {"ExecutionRoleArn": DEFAULT_ROLE_ARN if self.role is None else render(self.role),
                "PrimaryContainer": container}


class Model:
    """``sagemaker.model.Model``: an inference image and the model artifacts it serves."""

    def __init__(self, image_uri: Any, model_data: Any = None, role: Any = None,
                 predictor_cls: Any = None, env: Mapping[str, Any] | None = None,
                 name: str | None = None, sagemaker_session: Any = None, **_unused: Any) -> None:
        if image_uri is None:
            raise ValidationError("Model needs image_uri=...", location=caller_location())
        self.image_uri = image_uri
        self.model_data = model_data
        self.role = role
        self.env = dict(env or {})
        self.name = name
        self.sagemaker_session = sagemaker_session

    def create(self, instance_type: Any = None, accelerator_type: Any = None,
               **_unused: Any) -> _ModelArgs:
        """The CreateModel arguments for ``ModelStep(step_args=...)``."""
        return _ModelArgs(self.image_uri, self.model_data, self.role, dict(self.env))


@dataclass
class _TransformArgs:
    model_name: Any
    instance_count: Any
    instance_type: Any
    output_path: Any
    data: Any
    data_type: str = "S3Prefix"
    content_type: Any = None
    compression_type: Any = None
    split_type: Any = None
    accept: Any = None
    assemble_with: Any = None
    strategy: Any = None
    max_concurrent_transforms: Any = None
    max_payload: Any = None
    env: dict[str, Any] = field(default_factory=dict)

    def upstream_values(self) -> list[Any]:
        return [self.model_name, self.instance_count, self.instance_type, self.output_path,
                self.data, self.env]

    def to_request(self, default_output: Any) -> dict[str, Any]:
        source: dict[str, Any] = {"S3DataSource": {"S3DataType": self.data_type,
                                                   "S3Uri": render(self.data)}}
        transform_input: dict[str, Any] = {"DataSource": source}
        output: dict[str, Any] = {"S3OutputPath": render(
            default_output if self.output_path is None else self.output_path)}
        for target, key, value in ((transform_input, "ContentType", self.content_type),
                                   (transform_input, "CompressionType", self.compression_type),
                                   (transform_input, "SplitType", self.split_type),
                                   (output, "Accept", self.accept),
                                   (output, "AssembleWith", self.assemble_with)):
            if value is not None:
                target[key] = render(value)
        request: dict[str, Any] = {
            "ModelName": render(self.model_name), "TransformInput": transform_input,
            "TransformOutput": output,
            "TransformResources": {"InstanceCount": render(self.instance_count),
                                   "InstanceType": render(self.instance_type)}}
        for key, value in (("BatchStrategy", self.strategy),
                           ("MaxConcurrentTransforms", self.max_concurrent_transforms),
                           ("MaxPayloadInMB", self.max_payload)):
            if value is not None:
                request[key] = render(value)
        if self.env:
            request["Environment"] = render(self.env)
        return request


class Transformer:
    """``sagemaker.transformer.Transformer``: a batch transform with a created model."""

    def __init__(self, model_name: Any, instance_count: Any, instance_type: Any,
                 strategy: Any = None, assemble_with: Any = None, output_path: Any = None,
                 accept: Any = None, max_concurrent_transforms: Any = None,
                 max_payload: Any = None, env: Mapping[str, Any] | None = None,
                 sagemaker_session: Any = None, **_unused: Any) -> None:
        self.model_name = model_name
        self.instance_count = instance_count
        self.instance_type = instance_type
        self.strategy = strategy
        self.assemble_with = assemble_with
        self.output_path = output_path
        self.accept = accept
        self.max_concurrent_transforms = max_concurrent_transforms
        self.max_payload = max_payload
        self.env = dict(env or {})

    def transform(self, data: Any, data_type: str = "S3Prefix", content_type: Any = None,
                  compression_type: Any = None, split_type: Any = None,
                  **_unused: Any) -> _TransformArgs:
        """The transform job's arguments for ``TransformStep(step_args=...)``."""
        return _TransformArgs(
            model_name=self.model_name, instance_count=self.instance_count,
            instance_type=self.instance_type, output_path=self.output_path, data=data,
            data_type=data_type, content_type=content_type, compression_type=compression_type,
            split_type=split_type, accept=self.accept, assemble_with=self.assemble_with,
            strategy=self.strategy, max_concurrent_transforms=self.max_concurrent_transforms,
            max_payload=self.max_payload, env=dict(self.env))
