"""Classic ``TrainingStep`` with a generic ``Estimator``: SageMaker's definition shape,
script-mode files shipped byte-stable, local channels uploaded, and backends that cannot
run it refusing it at publish."""

from __future__ import annotations

import io
import tarfile

import pytest
from tests.fixtures import steps_by_name

from stepflow.backends.capabilities import check_runnable, step_kind
from stepflow.errors import BackendError, ValidationError
from stepflow.estimator import Estimator
from stepflow.inputs import TrainingInput
from stepflow.workflow.callsite import set_project_root
from stepflow.workflow.function_step import step
from stepflow.workflow.parameters import ParameterInteger, ParameterString
from stepflow.workflow.pipeline import Pipeline
from stepflow.workflow.steps import TrainingStep

IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/xgboost:1.7-1"


@pytest.fixture
def project(tmp_path):
    root = tmp_path / "project"
    (root / "src" / "lib").mkdir(parents=True)
    (root / "src" / "train.py").write_text("import lib.util\n")
    (root / "src" / "lib" / "util.py").write_text("X = 1\n")
    (root / "helpers.py").write_text("Y = 2\n")
    (root / "data").mkdir()
    (root / "data" / "validation.csv").write_text("v\n1\n")
    set_project_root(root)
    yield root
    set_project_root(None)


def _pipeline() -> tuple[Pipeline, TrainingStep]:
    instance_type = ParameterString("TrainInstanceType", default_value="ml.m5.xlarge")
    depth = ParameterInteger("MaxDepth", default_value=5)
    estimator = Estimator(image_uri=IMAGE, role="arn:aws:iam::123456789012:role/train",
                          instance_type=instance_type, entry_point="train.py", source_dir="src",
                          dependencies=["helpers.py"],
                          hyperparameters={"max_depth": depth, "eta": 0.2, "objective": "reg:squarederror"},
                          environment={"STAGE": "test"})
    train = TrainingStep("Train", step_args=estimator.fit(inputs={
        "train": TrainingInput("s3://datasets/abalone/train", content_type="text/csv"),
        "validation": TrainingInput("data/validation.csv", content_type="text/csv"),
    }))

    @step
    def evaluate(model_uri: str) -> str:
        return model_uri

    report = evaluate(train.properties.ModelArtifacts.S3ModelArtifacts)
    return Pipeline(name="classic", parameters=[instance_type, depth], steps=[report]), train


def _members(archive: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers()}  # type: ignore[union-attr]


def test_definition_in_sagemakers_shape(compile_, session, project):
    bundle = compile_(_pipeline()[0])
    train = steps_by_name(bundle.definition)["Train"]
    assert train["Type"] == "Training"
    args = train["Arguments"]
    folder = next(f.key for f in bundle.files if f.key.endswith("sourcedir.tar.gz")).rsplit("/code/", 1)[0]
    base = f"{session.s3_root_uri}/{folder}"
    assert args["AlgorithmSpecification"] == {"TrainingImage": IMAGE, "TrainingInputMode": "File"}
    assert args["ResourceConfig"] == {"VolumeSizeInGB": 30, "InstanceCount": 1,
                                      "InstanceType": {"Get": "Parameters.TrainInstanceType"}}
    assert args["StoppingCondition"] == {"MaxRuntimeInSeconds": 86400}
    assert args["RoleArn"] == "arn:aws:iam::123456789012:role/train"
    assert args["OutputDataConfig"]["S3OutputPath"] == {"Std:Join": {"On": "/", "Values": [
        f"{session.s3_root_uri}/classic", {"Get": "Execution.PipelineExecutionId"}, "Train", "output"]}}
    assert args["InputDataConfig"] == [
        {"ChannelName": "train", "ContentType": "text/csv", "DataSource": {"S3DataSource": {
            "S3DataType": "S3Prefix", "S3Uri": "s3://datasets/abalone/train",
            "S3DataDistributionType": "FullyReplicated"}}},
        {"ChannelName": "validation", "ContentType": "text/csv", "DataSource": {"S3DataSource": {
            "S3DataType": "S3Prefix", "S3Uri": f"{base}/input/validation/validation.csv",
            "S3DataDistributionType": "FullyReplicated"}}},
    ]
    assert args["HyperParameters"] == {
        "max_depth": {"Std:Join": {"On": "", "Values": [{"Get": "Parameters.MaxDepth"}]}},
        "eta": "0.2", "objective": "reg:squarederror",
        "sagemaker_program": '"train.py"',
        "sagemaker_submit_directory": f'"{base}/code/sourcedir.tar.gz"',
        "sagemaker_container_log_level": "20", "sagemaker_region": '"us-east-1"'}
    assert args["Environment"] == {"STAGE": "test"}
    # The downstream @step reads the job's model artifacts.
    evaluate = steps_by_name(bundle.definition)["evaluate"]
    assert "Steps.Train.ModelArtifacts.S3ModelArtifacts" in str(evaluate["Arguments"])

    shipped = {f.key[len(folder) + 1:]: bundle.path_of(f.key).read_bytes()
               for f in bundle.files if f.key.startswith(folder + "/")}
    assert shipped["input/validation/validation.csv"] == b"v\n1\n"
    assert _members(shipped["code/sourcedir.tar.gz"]) == {
        "helpers.py": b"Y = 2\n", "lib/util.py": b"X = 1\n", "train.py": b"import lib.util\n"}


def test_sourcedir_archive_is_byte_stable(compile_, project):
    first = compile_(_pipeline()[0], previous_index={})
    (project / "src" / "train.py").touch()  # a new mtime, same content
    second = compile_(_pipeline()[0], previous_index={})

    def archive(bundle):
        key = next(f.key for f in bundle.files if f.key.endswith("sourcedir.tar.gz"))
        return bundle.path_of(key).read_bytes()

    assert archive(first) == archive(second)
    assert set(_members(archive(first))) == {"helpers.py", "lib/util.py", "train.py"}


def test_the_sdks_older_form_and_a_single_channel(compile_, project):
    estimator = Estimator(image_uri=IMAGE, instance_type="ml.m5.large")
    train = TrainingStep("Fit", estimator=estimator, inputs="s3://datasets/all")
    bundle = compile_(Pipeline(name="older", steps=[train]))
    args = steps_by_name(bundle.definition)["Fit"]["Arguments"]
    assert [c["ChannelName"] for c in args["InputDataConfig"]] == ["training"]
    assert "HyperParameters" not in args
    assert not list(bundle.files)  # nothing local: nothing shipped


def test_bad_training_steps_say_what_to_fix(compile_, project):
    with pytest.raises(ValidationError, match="needs step_args=estimator.fit"):
        TrainingStep("T", step_args=None)
    with pytest.raises(ValidationError, match="only a local folder"):
        Estimator(image_uri=IMAGE, entry_point="train.py", source_dir="s3://code/src.tar.gz")
    estimator = Estimator(image_uri=IMAGE, entry_point="missing.py", source_dir="src")
    with pytest.raises(ValidationError, match="script-mode file 'missing.py'"):
        compile_(Pipeline(name="bad", steps=[TrainingStep("T", step_args=estimator.fit())]))


def test_the_local_backend_refuses_a_training_job_at_publish(project, session):
    pipeline, _ = _pipeline()
    pipeline._session = session
    with pytest.raises(BackendError, match=(
            r"step 'Train' \(Training\) is a training job on its own image \(SageMaker's training "
            r"contract\), which the local backend cannot run; backends that can: sagemaker")):
        pipeline.upsert()


def test_step_kinds(compile_, project):
    bundle = compile_(_pipeline()[0])
    steps = steps_by_name(bundle.definition)
    assert step_kind("Training", steps["evaluate"]["Arguments"]) == "function"
    assert step_kind("Training", steps["Train"]["Arguments"]) == "training"
    assert step_kind("Condition", {}) == "engine"
    check_runnable("classic", bundle.definition, "sagemaker")  # runs everything here
    # Step pods run @step functions and processing containers, not yet the training contract.
    with pytest.raises(BackendError, match=r"step 'Train' \(Training\) is a training job on its own image"):
        check_runnable("classic", bundle.definition, "kubernetes")
    check_runnable("classic", bundle.definition, "some-future-backend")  # unknown: not judged


def test_model_and_transform_steps_in_sagemakers_shape(compile_, session, project):
    from stepflow.model import Model
    from stepflow.transformer import Transformer
    from stepflow.workflow.model_step import ModelStep
    from stepflow.workflow.steps import TransformStep

    _, train = _pipeline()
    model = Model(image_uri=IMAGE, model_data=train.properties.ModelArtifacts.S3ModelArtifacts,
                  role="arn:aws:iam::123456789012:role/model", env={"MODE": "batch"})
    create = ModelStep("Abalone", step_args=model.create(instance_type="ml.m5.large"))
    transformer = Transformer(model_name=create.properties.ModelName, instance_count=1,
                              instance_type="ml.m5.xlarge", accept="text/csv", assemble_with="Line")
    transform = TransformStep("Score", step_args=transformer.transform(
        "s3://datasets/abalone/batch", content_type="text/csv", split_type="Line"))
    bundle = compile_(Pipeline(name="serving", parameters=[
        ParameterString("TrainInstanceType", default_value="ml.m5.xlarge"),
        ParameterInteger("MaxDepth", default_value=5)], steps=[transform]))
    steps = steps_by_name(bundle.definition)
    assert set(steps) == {"Train", "Abalone-CreateModel", "Score"}
    assert steps["Abalone-CreateModel"]["Type"] == "Model"
    assert steps["Abalone-CreateModel"]["Arguments"] == {
        "ExecutionRoleArn": "arn:aws:iam::123456789012:role/model",
        "PrimaryContainer": {"Image": IMAGE, "Environment": {"MODE": "batch"},
                             "ModelDataUrl": {"Get": "Steps.Train.ModelArtifacts.S3ModelArtifacts"}}}
    score = steps["Score"]
    assert score["Type"] == "Transform"
    assert score["Arguments"]["ModelName"] == {"Get": "Steps.Abalone-CreateModel.ModelName"}
    assert score["Arguments"]["TransformInput"] == {
        "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://datasets/abalone/batch"}},
        "ContentType": "text/csv", "SplitType": "Line"}
    assert score["Arguments"]["TransformOutput"]["Accept"] == "text/csv"
    assert score["Arguments"]["TransformResources"] == {"InstanceCount": 1, "InstanceType": "ml.m5.xlarge"}
    # Only a backend that drives SageMaker creates models and runs transform jobs.
    with pytest.raises(BackendError, match=(
            r"step 'Abalone-CreateModel' \(Model\) creates a SageMaker resource \(a model or a "
            r"transform job\), which the kubernetes backend cannot run; backends that can: sagemaker")):
        check_runnable("serving", bundle.definition, "kubernetes")
    check_runnable("serving", bundle.definition, "sagemaker")
