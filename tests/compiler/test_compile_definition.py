"""The compiled definition: SageMaker's shape, <ts> folders, config precedence, files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from tests.fixtures import PIPELINES, container_args, flag, steps_by_name

from stepflow.compiler.loader import load_pipeline
from stepflow.compiler.timestamps import build_timestamp
from stepflow.config import StepflowConfig
from stepflow.errors import ConfigurationError, IntegrityError, ValidationError
from stepflow.serialization import deserialize
from stepflow.session import Session
from stepflow.workflow.function_step import step
from stepflow.workflow.pipeline import Pipeline

REFERENCE = Path("/work/shared/reference_definition.json")


def _shape(value: Any, path: str = "") -> Any:
    """Structure without names, paths, timestamps and versions: key order, types, lengths."""
    if isinstance(value, dict):
        return {k: _shape(v, f"{path}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        if path.endswith("ContainerArguments"):
            return [v if isinstance(v, str) and v.startswith("--") else _shape(v, path + "[]")
                    for v in value]
        return [_shape(v, path + "[]") for v in value]
    return type(value).__name__


@pytest.fixture
def reference_bundle(compile_, monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    return compile_(load_pipeline("reference_pipeline.py", workdir=PIPELINES))


def test_definition_has_the_shape_of_the_sagemaker_reference(reference_bundle):
    ours = reference_bundle.definition
    reference = json.loads(REFERENCE.read_text())
    for d in (ours, reference):  # the only intended difference in the argument names
        for s in steps_by_name(d).values():
            if s["Type"] == "Training":
                args = container_args(s)
                if "--client_sagemaker_pysdk_version" in args:
                    args[args.index("--client_sagemaker_pysdk_version")] = "--client_stepflow_version"
                s.pop("Description", None)  # ours: docstring or nothing; theirs: a local path
                # Theirs always ships a requirements file (the SDK injects `sagemaker`);
                # ours has no dependency channel when the step declares nothing.
                s["Arguments"]["InputDataConfig"] = [
                    c for c in s["Arguments"]["InputDataConfig"]
                    if c["ChannelName"] != "pre_exec_script_and_dependencies"]
    assert _shape(ours) == _shape(reference)
    assert [s["Name"] for s in ours["Steps"]] == [s["Name"] for s in reference["Steps"]]
    assert ours["Parameters"] == reference["Parameters"]
    ours_steps, ref_steps = steps_by_name(ours), steps_by_name(reference)
    for name in ref_steps:
        assert ours_steps[name].get("DependsOn") == ref_steps[name].get("DependsOn"), name
    assert ours_steps["train"]["RetryPolicies"] == ref_steps["train"]["RetryPolicies"]
    assert ours_steps["check-rmse"]["Arguments"]["Conditions"] == \
        ref_steps["check-rmse"]["Arguments"]["Conditions"]
    assert ours_steps["rmse-too-high"] == ref_steps["rmse-too-high"]


def test_layout_of_the_bundle_matches_the_store_layout(reference_bundle, session):
    keys = {f.key for f in reference_bundle.files}
    ts = flag(steps_by_name(reference_bundle.definition)["train"], "--func_step_s3_dir")
    assert "spec-ref-pipeline/sagemaker_remote_function_bootstrap/job_driver.sh" in keys
    assert {k for k in keys if k.startswith(f"spec-ref-pipeline/train/{ts}/")} == {
        f"spec-ref-pipeline/train/{ts}/{name}" for name in (
            "function/payload.pkl", "function/metadata.json", "arguments/payload.pkl",
            "arguments/metadata.json")}
    for f in reference_bundle.files:
        assert reference_bundle.path_of(f.key).stat().st_size == f.size
    assert reference_bundle.digest.startswith("sha256:")
    assert reference_bundle.step_count == 6


def test_ts_is_reused_for_unchanged_steps_and_new_for_changed(compile_, monkeypatch):
    @step
    def prep(n):
        return n

    @step
    def fit(d):
        return d

    def build(n):
        return Pipeline(name="reuse", steps=[fit(prep(n))])

    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    first = compile_(build(1))
    index = {f.key: f.sha256 for f in first.files}
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1800000000")
    same = compile_(build(1), previous_index=index)
    assert same.definition_bytes == first.definition_bytes
    changed = compile_(build(2), previous_index=index)
    steps = steps_by_name(changed.definition)
    assert flag(steps["prep"], "--func_step_s3_dir") == "2027-01-15-08-00-00-000"
    assert flag(steps["fit"], "--func_step_s3_dir") == "2023-11-14-22-13-20-000"


def test_build_timestamp_format_and_source_date_epoch(monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000.25")
    assert build_timestamp() == "2023-11-14-22-13-20-250"
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "yesterday")
    with pytest.raises(ConfigurationError, match="SOURCE_DATE_EPOCH=.yesterday."):
        build_timestamp()


def test_dependencies_file_is_shipped_untouched(compile_, tmp_path, monkeypatch):
    from stepflow.workflow.callsite import set_project_root

    requirements = tmp_path / "requirements.txt"
    requirements.write_text("numpy==1.26.4\n")
    before = (requirements.read_bytes(), requirements.stat().st_mtime_ns)
    set_project_root(tmp_path)
    try:
        @step(dependencies="requirements.txt", pre_execution_commands=["echo one", "echo two"])
        def f():
            return 1

        bundle = compile_(Pipeline(name="deps", steps=[f()]))
    finally:
        set_project_root(None)
    assert (requirements.read_bytes(), requirements.stat().st_mtime_ns) == before
    files = {f.key.split("/", 3)[3]: bundle.path_of(f.key).read_bytes()
             for f in bundle.files if "/pre_exec" in f.key}
    assert files == {"pre_exec_script_and_dependencies/requirements.txt": b"numpy==1.26.4\n",
                     "pre_exec_script_and_dependencies/pre_exec.sh": b"echo one\necho two\n"}
    s = bundle.definition["Steps"][0]
    assert json.loads(flag(s, "--dependency_settings")) == {"dependency_file": "requirements.txt"}


def test_missing_dependencies_file_is_a_clear_error(compile_):
    @step(dependencies="no-such-requirements.txt")
    def f():
        return 1

    with pytest.raises(ValidationError, match="dependencies='no-such-requirements.txt' is not a file"):
        compile_(Pipeline(name="deps", steps=[f()]))


def test_no_dependencies_ships_no_dependency_channel(reference_bundle):
    train = steps_by_name(reference_bundle.definition)["train"]
    channels = [c["ChannelName"] for c in train["Arguments"]["InputDataConfig"]]
    assert channels == ["sagemaker_remote_function_bootstrap"]
    assert flag(train, "--dependency_settings") == '{"dependency_file": null}'
    assert not any("pre_exec_script_and_dependencies" in f.key for f in reference_bundle.files)


def test_decorator_beats_configuration_beats_default(compile_, store_root):
    config = StepflowConfig(s3_root_uri=store_root, remote_function={
        "InstanceType": "ml.c5.2xlarge", "ImageUri": "config/image", "RoleArn": "arn:config",
        "EnvironmentVariables": {"FROM": "config"}, "Tags": [{"Key": "a", "Value": "config"},
                                                             {"Key": "b", "Value": "config"}],
        "VpcConfig": {"Subnets": ["subnet-c"], "SecurityGroupIds": ["sg-c"]},
        "S3KmsKeyId": "kms-s3"})
    session = Session(config=config)

    @step(instance_type="ml.p3.2xlarge", tags=[{"Key": "a", "Value": "decorator"}])
    def f():
        return 1

    @step
    def g():
        return 1

    steps = steps_by_name(compile_(Pipeline(name="prec", steps=[f(), g()],
                                             session=session)).definition)
    fa, ga = steps["f"]["Arguments"], steps["g"]["Arguments"]
    assert fa["ResourceConfig"]["InstanceType"] == "ml.p3.2xlarge"
    assert ga["ResourceConfig"]["InstanceType"] == "ml.c5.2xlarge"
    assert fa["Tags"] == [{"Key": "a", "Value": "decorator"}, {"Key": "b", "Value": "config"}]
    assert ga["AlgorithmSpecification"]["TrainingImage"] == "config/image"
    assert ga["RoleArn"] == "arn:config"
    assert ga["Environment"] == {"FROM": "config", "AWS_DEFAULT_REGION": "us-east-1"}
    assert ga["VpcConfig"] == {"Subnets": ["subnet-c"], "SecurityGroupIds": ["sg-c"]}
    assert ga["OutputDataConfig"]["KmsKeyId"] == "kms-s3"
    assert flag(steps["g"], "--s3_kms_key") == "kms-s3"

    plain = steps_by_name(compile_(Pipeline(name="defaults", steps=[g()])).definition)["g"]
    assert plain["Arguments"]["ResourceConfig"]["InstanceType"] == "ml.m5.large"
    assert plain["Arguments"]["RoleArn"].startswith("arn:aws:iam::000000000000:role/")


def test_integrity_key_signs_every_artifact(compile_):
    @step
    def f(x):
        return x

    bundle = compile_(Pipeline(name="signed", steps=[f(41)]), integrity_key=b"k" * 32)
    key = next(f.key for f in bundle.files if f.key.endswith("arguments/payload.pkl"))
    payload = bundle.path_of(key).read_bytes()
    metadata = bundle.path_of(key.replace("payload.pkl", "metadata.json")).read_bytes()
    assert deserialize(payload, metadata, key=b"k" * 32) == ((41,), {})
    with pytest.raises(IntegrityError):
        deserialize(payload, metadata, key=b"x" * 32)


def test_workspace_zip_when_including_the_local_workdir(compile_, tmp_path):
    import io
    import zipfile

    from stepflow.workflow.callsite import set_project_root

    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "helpers.py").write_text("X = 1\n")
    (tmp_path / "notes.txt").write_text("not python\n")
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "hook.py").write_text("secret = 1\n")
    set_project_root(tmp_path)
    try:
        @step(include_local_workdir=True)
        def f():
            return 1

        first = compile_(Pipeline(name="ws", steps=[f()]))
        second = compile_(Pipeline(name="ws", steps=[f()]),
                          previous_index={x.key: x.sha256 for x in first.files})
    finally:
        set_project_root(None)
    key = next(x.key for x in first.files if x.key.endswith("workspace.zip"))
    names = zipfile.ZipFile(io.BytesIO(first.path_of(key).read_bytes())).namelist()
    assert names == ["sagemaker_remote_function_workspace/pkg/helpers.py"]
    channel = first.definition["Steps"][0]["Arguments"]["InputDataConfig"][-1]
    ts = key.split("/")[2]
    assert channel["ChannelName"] == ts
    assert channel["DataSource"]["S3DataSource"]["S3Uri"].endswith(f"ws/sm_rf_user_ws/{ts}/workspace.zip")
    assert second.definition_bytes == first.definition_bytes


@pytest.mark.parametrize("target, names", [
    ("seed_processing.py", {"train", "MyProcessStep"}),
    ("seed_condition.py", {"conditional_register", "evaluate", "Fail", "register"}),
    ("seed_chain.py:pipeline", {"preprocess", "train"}),
    ("seed_chain.py:explicit", {"train_alone", "preprocess"}),
    ("seed_chain.py:parallel", {"process1", "process2"}),
])
def test_seed_examples_compile(compile_, target, names):
    bundle = compile_(load_pipeline(target, workdir=PIPELINES))
    assert set(steps_by_name(bundle.definition)) == names


def test_processing_step_outputs_feed_a_function_step(compile_):
    bundle = compile_(load_pipeline("seed_processing.py", workdir=PIPELINES))
    steps = steps_by_name(bundle.definition)
    train, proc = steps["train"], steps["MyProcessStep"]
    ref = "Steps.MyProcessStep.ProcessingOutputConfig.Outputs['train'].S3Output.S3Uri"
    args = container_args(train)
    assert args[args.index(ref) + 1] == {"Std:Join": {"On": "", "Values": [{"Get": ref}]}}
    assert "DependsOn" not in train  # the service infers it from the Get, as with the SDK
    app = proc["Arguments"]["AppSpecification"]
    assert app["ImageUri"].endswith("sagemaker-scikit-learn:1.2-1-cpu-py3")
    assert app["ContainerEntrypoint"] == ["python3", "/opt/ml/processing/input/code/preprocessing.py"]
    code_key = next(f.key for f in bundle.files if f.key.endswith("code/preprocessing.py"))
    assert bundle.path_of(code_key).read_bytes() == (PIPELINES / "preprocessing.py").read_bytes()
    assert proc["Arguments"]["ProcessingResources"]["ClusterConfig"]["InstanceCount"] == 1
