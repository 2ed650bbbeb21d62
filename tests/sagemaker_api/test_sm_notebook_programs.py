"""Whole programs of the kind AWS's @step notebooks contain, imports renamed and nothing
else, run on the local backend against the real S3 server.

The notebook sets ``SAGEMAKER_USER_CONFIG_OVERRIDE`` to its ``config.yaml``, reads the
region, default bucket and role from a session, uploads its data, names its pipeline with
``unique_name_from_base``, and reads the result back in a later cell through the
execution's ARN.
"""

from __future__ import annotations

import re
import textwrap

from tests.fixtures import LAPTOP_STEPS

from stepflow.compiler.loader import load_pipeline
from stepflow.session import Session
from stepflow.workflow.pipeline_execution import _PipelineExecution

CONFIG = """\
SchemaVersion: '1.0'
SageMaker:
  PythonSDK:
    Modules:
      Session:
        DefaultS3Bucket: {bucket}
        DefaultS3ObjectKeyPrefix: notebooks
      RemoteFunction:
        InstanceType: ml.m5.xlarge
        EnvironmentVariables: {{STAGE: test}}
  Pipeline:
    RoleArn: arn:aws:iam::111122223333:role/notebook
"""

NOTEBOOK = """\
import os

import stepflow
from stepflow.s3 import s3_path_join
from stepflow.utils import unique_name_from_base
from stepflow.workflow.function_step import step
from stepflow.workflow.parameters import ParameterFloat
from stepflow.workflow.pipeline import Pipeline
from stepflow.workflow.pipeline_context import PipelineSession

os.environ["SAGEMAKER_USER_CONFIG_OVERRIDE"] = os.path.join(os.getcwd(), "config.yaml")

sagemaker_session = PipelineSession()
role = stepflow.get_execution_role()
region = sagemaker_session.boto_region_name
default_bucket = sagemaker_session.default_bucket()
prefix = s3_path_join(sagemaker_session.default_bucket_prefix, "abalone")
input_uri = sagemaker_session.upload_data("data/abalone.csv", key_prefix="abalone/raw")
output_uri = s3_path_join("s3://", default_bucket, prefix, "processed")

threshold = ParameterFloat("Threshold", default_value=5.0)


@step(name="preprocess", role=role, keep_alive_period_in_seconds=0)
def preprocess(raw_uri: str, out_uri: str) -> str:
    import boto3

    s3 = boto3.client("s3")
    bucket, key = raw_uri[len("s3://"):].split("/", 1)
    rows = s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode().splitlines()[1:]
    rings = [int(line.split(",")[-1]) for line in rows]
    out_bucket, out_key = out_uri[len("s3://"):].split("/", 1)
    s3.put_object(Bucket=out_bucket, Key=out_key + "/rings.txt",
                  Body="\\n".join(map(str, rings)).encode())
    return out_uri + "/rings.txt"


@step(name="train")
def train(rings_uri: str, threshold: float) -> dict:
    import os

    import boto3

    bucket, key = rings_uri[len("s3://"):].split("/", 1)
    body = boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read().decode()
    rings = [int(x) for x in body.split()]
    return {"mean": sum(rings) / len(rings), "above": sum(r > threshold for r in rings),
            "region": os.environ.get("AWS_DEFAULT_REGION")}


pipeline = Pipeline(
    name=unique_name_from_base("abalone-pipeline"),
    parameters=[threshold],
    steps=[train(preprocess(input_uri, output_uri), threshold)],
    sagemaker_session=sagemaker_session,
)
"""


def test_the_abalone_notebook(clean_env, s3, tmp_path):
    for name, value in s3.env().items():
        clean_env.setenv(name, value)
    # The notebook's steps read S3 with the user's credentials, as on a data scientist's
    # laptop (not root: the user code keeps the user's environment); as root they would run
    # as uid 65534 with no credentials (docs/ISOLATION.md).
    for name, value in LAPTOP_STEPS.items():
        clean_env.setenv(name, value)
    clean_env.delenv("STEPFLOW_S3_ROOT_URI")  # the notebook's config.yaml names the bucket
    clean_env.delenv("SAGEMAKER_USER_CONFIG_OVERRIDE")
    project = tmp_path / "notebook"
    (project / "data").mkdir(parents=True)
    (project / "data" / "abalone.csv").write_text("sex,length,rings\nM,0.45,15\nF,0.53,7\nI,0.33,4\n")
    (project / "config.yaml").write_text(CONFIG.format(bucket=s3.bucket))
    (project / "abalone_notebook.py").write_text(textwrap.dedent(NOTEBOOK))
    clean_env.chdir(project)

    pipeline = load_pipeline("abalone_notebook.py", workdir=project)
    assert re.fullmatch(r"abalone-pipeline-\d+-[0-9a-f]{4}", pipeline.name)
    session = pipeline.sagemaker_session
    assert session.s3_root_uri == f"s3://{s3.bucket}/notebooks"
    assert session.boto_region_name == s3.region
    # The data went where the SDK would put it: <bucket>/<default prefix>/<key_prefix>/<file>.
    listed = s3.client().list_objects_v2(Bucket=s3.bucket, Prefix="notebooks/abalone/raw/")
    assert [o["Key"] for o in listed["Contents"]] == ["notebooks/abalone/raw/abalone.csv"]

    created = pipeline.upsert()
    assert created["PipelineArn"] == (
        f"arn:aws:sagemaker:{s3.region}:000000000000:pipeline/{pipeline.name}")
    definition = pipeline.describe()["PipelineDefinition"]
    assert "arn:aws:iam::111122223333:role/notebook" in definition  # get_execution_role()
    assert "ml.m5.xlarge" in definition                             # RemoteFunction defaults
    assert '"STAGE": "test"' in definition

    execution = pipeline.start(parameters={"Threshold": 6.0})
    assert execution.wait(timeout=180)["PipelineExecutionStatus"] == "Succeeded", \
        execution.list_steps()

    # A later cell: a new session, the execution found again by its ARN.
    later = _PipelineExecution(arn=execution.arn, sagemaker_session=Session())
    assert later.result("train") == {"mean": 26 / 3, "above": 2, "region": s3.region}
    processed = s3.client().get_object(Bucket=s3.bucket, Key="notebooks/abalone/processed/rings.txt")
    assert processed["Body"].read() == b"15\n7\n4"
