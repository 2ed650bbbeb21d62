"""The definition JSON, in the SageMaker Pipelines format (docs/SAGEMAKER-COMPATIBILITY.md,
"Definition format").

Function steps are training jobs whose container runs stepflow's job driver and
runtime; the argument list keeps the SDK's names (``--client_stepflow_version`` replaces
the SDK version) so the runtime parses them the same way.
"""

from __future__ import annotations

import json
import re
import sys
from typing import TYPE_CHECKING, Any

from stepflow import layout
from stepflow.compiler.graph import PipelineGraph, depends_on_names, output_readers
from stepflow.workflow.defaults import (
    DEFAULT_INSTANCE_TYPE,
    DEFAULT_ROLE_ARN,
    default_image_uri,
)
from stepflow.workflow.entities import render
from stepflow.workflow.function_step import FunctionStep
from stepflow.workflow.steps import Step

if TYPE_CHECKING:
    from stepflow.compiler.artifacts import StepArtifacts
    from stepflow.workflow.pipeline import Pipeline

VERSION = "2020-12-01"
ENTRYPOINT = ["/bin/bash", f"/opt/ml/input/data/{layout.job_driver_key()}"]
_JOB_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9-]")

# decorator keyword → configuration key (docs/SAGEMAKER-COMPATIBILITY.md, "Configuration")
CONFIG_KEYS = {
    "dependencies": "Dependencies",
    "pre_execution_commands": "PreExecutionCommands",
    "pre_execution_script": "PreExecutionScript",
    "environment_variables": "EnvironmentVariables",
    "image_uri": "ImageUri",
    "instance_type": "InstanceType",
    "job_conda_env": "JobCondaEnvironment",
    "role": "RoleArn",
    "volume_kms_key": "VolumeKmsKeyId",
    "encrypt_inter_container_traffic": "EnableInterContainerTrafficEncryption",
    "include_local_workdir": "IncludeLocalWorkDir",
}


def resolve_settings(step: FunctionStep, config: dict[str, Any]) -> dict[str, Any]:
    """Decorator value if given, else configuration, else default (per key)."""
    s = step.settings
    resolved: dict[str, Any] = {k: getattr(s, k) for k in s.__dataclass_fields__}
    for keyword, config_key in CONFIG_KEYS.items():
        if resolved[keyword] is None and config.get(config_key) is not None:
            resolved[keyword] = config[config_key]
    vpc = config.get("VpcConfig") or {}
    if resolved["subnets"] is None:
        resolved["subnets"] = vpc.get("Subnets")
    if resolved["security_group_ids"] is None:
        resolved["security_group_ids"] = vpc.get("SecurityGroupIds")
    if resolved["custom_file_filter"] is None:
        resolved["custom_file_filter"] = (config.get("CustomFileFilter") or {}).get(
            "IgnoreNamePatterns")
    tags = list(resolved["tags"] or [])
    keys = {t.get("Key") for t in tags}
    tags += [t for t in config.get("Tags") or [] if t.get("Key") not in keys]
    resolved["tags"] = tags
    resolved["s3_kms_key"] = config.get("S3KmsKeyId")
    # Many keywords may be pipeline variables, which have no truth value: test for None.
    for keyword, default in (("image_uri", default_image_uri()),
                             ("instance_type", DEFAULT_INSTANCE_TYPE), ("role", DEFAULT_ROLE_ARN),
                             ("encrypt_inter_container_traffic", False),
                             ("include_local_workdir", False)):
        if resolved[keyword] is None:
            resolved[keyword] = default
    resolved["include_local_workdir"] = bool(resolved["include_local_workdir"])
    return resolved


class Renderer:
    """The compiler's ``RenderContext``: what steps need to know to render themselves.

    Steps render their own names (and those of the steps they read), so rendering runs
    inside the graph's ``names.active()`` scope; the compiler's own strings use
    ``graph.name_of``.
    """

    def __init__(self, pipeline: Pipeline, graph: PipelineGraph, s3_base_uri: str,
                 step_ts: dict[int, str], artifacts: dict[int, StepArtifacts],
                 settings: dict[int, dict[str, Any]],
                 region: str, stepflow_version: str) -> None:
        self.pipeline = pipeline
        self.graph = graph
        self.s3_base_uri = s3_base_uri
        self.step_ts = step_ts
        self.artifacts = artifacts
        self.settings = settings
        self.region = region
        self.stepflow_version = stepflow_version
        self.readers = output_readers(graph)

    def step_folder_uri(self, step: Step) -> str:
        name = self.graph.name_of(step)
        return f"{self.s3_base_uri}/{layout.step_folder(name, self.step_ts[id(step)])}"

    def depends_on(self, step: Step) -> list[str]:
        return depends_on_names(self.graph, step)

    def render_step(self, step: Step) -> dict[str, Any]:
        return step.to_request(self)

    def definition(self) -> dict[str, Any]:
        config = self.pipeline.pipeline_experiment_config
        return {"Version": VERSION, "Metadata": {},
                "Parameters": [p.to_request() for p in self.pipeline.parameters],
                "PipelineExperimentConfig": config.to_request() if config is not None else None,
                "Steps": [self.render_step(s) for s in self.graph.top_level]}

    def function_step_arguments(self, step: Step) -> dict[str, Any]:
        assert isinstance(step, FunctionStep)
        s = self.settings[id(step)]
        arguments: dict[str, Any] = {}
        definition_config = self.pipeline.pipeline_definition_config
        if definition_config is not None and definition_config.use_custom_job_prefix:
            arguments["TrainingJobName"] = s["job_name_prefix"] or _JOB_NAME_UNSAFE.sub(
                "-", step.func.__name__.lstrip("_")) or "step"
        arguments["RoleArn"] = s["role"]
        stopping = {"MaxRuntimeInSeconds": render(s["max_runtime_in_seconds"])}
        if s["max_wait_time_in_seconds"] is not None:
            stopping["MaxWaitTimeInSeconds"] = render(s["max_wait_time_in_seconds"])
        arguments["StoppingCondition"] = stopping
        arguments["RetryStrategy"] = {"MaximumRetryAttempts": render(s["max_retry_attempts"])}
        if s["tags"]:
            arguments["Tags"] = render(s["tags"])
        arguments["InputDataConfig"] = self._channels(step, s)
        output: dict[str, Any] = {"S3OutputPath": {"Std:Join": {"On": "/", "Values": [
            self.s3_base_uri, {"Get": "Execution.PipelineExecutionId"}, self.graph.name_of(step),
            layout.RESULTS_FOLDER]}}}
        if s["s3_kms_key"]:
            output["KmsKeyId"] = s["s3_kms_key"]
        arguments["OutputDataConfig"] = output
        arguments["AlgorithmSpecification"] = {
            "TrainingImage": render(s["image_uri"]), "TrainingInputMode": "File",
            "ContainerEntrypoint": list(ENTRYPOINT),
            "ContainerArguments": self._container_arguments(step, s)}
        resources: dict[str, Any] = {"VolumeSizeInGB": render(s["volume_size"]),
                                     "InstanceCount": render(s["instance_count"]),
                                     "InstanceType": render(s["instance_type"])}
        if s["volume_kms_key"] is not None:
            resources["VolumeKmsKeyId"] = render(s["volume_kms_key"])
        resources["KeepAlivePeriodInSeconds"] = render(s["keep_alive_period_in_seconds"])
        arguments["ResourceConfig"] = resources
        arguments["EnableNetworkIsolation"] = False
        arguments["EnableInterContainerTrafficEncryption"] = render(
            s["encrypt_inter_container_traffic"])
        if s["subnets"] or s["security_group_ids"]:
            arguments["VpcConfig"] = {"Subnets": render(list(s["subnets"] or [])),
                                      "SecurityGroupIds": render(
                                          list(s["security_group_ids"] or []))}
        arguments["EnableManagedSpotTraining"] = render(s["use_spot_instances"])
        environment = dict(render(s["environment_variables"] or {}))
        environment["AWS_DEFAULT_REGION"] = self.region
        arguments["Environment"] = environment
        return arguments

    def _channels(self, step: FunctionStep, s: dict[str, Any]) -> list[dict[str, Any]]:
        def channel(name: str, uri: str) -> dict[str, Any]:
            return {"ChannelName": name, "DataSource": {"S3DataSource": {
                "S3Uri": uri, "S3DataType": "S3Prefix"}}}

        base, ts, name = self.s3_base_uri, self.step_ts[id(step)], self.graph.name_of(step)
        channels = [channel(layout.BOOTSTRAP_CHANNEL, f"{base}/{layout.BOOTSTRAP_CHANNEL}")]
        dependencies = layout.DEPENDENCIES_FOLDER
        if any(key.startswith(dependencies + "/") for key in self.artifacts[id(step)].files):
            channels.append(channel(dependencies, f"{base}/{layout.dependencies_prefix(name, ts)}"))
        if s["include_local_workdir"]:
            channels.append(channel(ts, f"{base}/{layout.workspace_key(ts)}"))
        return channels

    def _container_arguments(self, step: FunctionStep, s: dict[str, Any]) -> list[Any]:
        artifacts = self.artifacts[id(step)]
        dependency_settings = json.dumps({"dependency_file": artifacts.dependency_file})
        args: list[Any] = [
            "--s3_base_uri", self.s3_base_uri,
            "--region", self.region,
            "--client_python_version", f"{sys.version_info.major}.{sys.version_info.minor}",
            "--client_stepflow_version", self.stepflow_version,
            "--dependency_settings", dependency_settings,
        ]
        if s["s3_kms_key"]:
            args += ["--s3_kms_key", s["s3_kms_key"]]
        if s["job_conda_env"] is not None:
            args += ["--job_conda_env", render(s["job_conda_env"])]
        args += ["--pipeline_step_name", self.graph.name_of(step),
                 "--pipeline_execution_id", {"Get": "Execution.PipelineExecutionId"},
                 "--func_step_s3_dir", self.step_ts[id(step)],
                 "--property_references",
                 "Execution.PipelineExecutionId", {"Get": "Execution.PipelineExecutionId"}]
        for key, value in artifacts.property_references:
            args += [key, value]
        if id(step) in self.readers:
            args += ["--serialize_output_to_json", "true"]
        return args


def encode(definition: dict[str, Any]) -> bytes:
    """The definition's bytes: key order as built (SageMaker's), UTF-8, no whitespace games."""
    return json.dumps(definition, ensure_ascii=False).encode("utf-8")
