"""``stepflow.session``: what AWS's @step notebooks read from a SageMaker session.

Each test is a few lines such notebooks contain (``sagemaker.`` → ``stepflow.``), run
against a file:// store and, for S3 behaviour, the real S3 server.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from stepflow.errors import BackendError, ValidationError
from stepflow.session import Session, get_execution_role
from stepflow.workflow.defaults import DEFAULT_ROLE_ARN


def test_session_is_an_attribute_after_import_stepflow():
    code = ("import stepflow\n"
            "print(stepflow.session.Session.__name__, stepflow.Session is stepflow.session.Session,"
            " stepflow.utils.unique_name_from_base.__name__, stepflow.s3.s3_path_join('a', 'b'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["Session", "True", "unique_name_from_base", "a/b"]


def test_region_and_bucket_on_a_file_store(clean_env):
    clean_env.setenv("AWS_REGION", "eu-west-1")
    session = Session()
    assert session.boto_region_name == "eu-west-1"
    # No S3 store, no configured bucket: SageMaker's name with the placeholder account.
    assert session.default_bucket() == "sagemaker-eu-west-1-000000000000"
    assert session.default_bucket_prefix is None
    assert session.account_id() == "000000000000"


def test_region_from_the_aws_profile(clean_env, tmp_path):
    config = tmp_path / "aws-config"
    config.write_text("[default]\nregion = ap-south-1\n[profile team]\nregion = sa-east-1\n")
    clean_env.setenv("AWS_CONFIG_FILE", str(config))
    assert Session().boto_region_name == "ap-south-1"
    clean_env.setenv("AWS_PROFILE", "team")
    assert Session().boto_region_name == "sa-east-1"
    clean_env.setenv("AWS_DEFAULT_REGION", "us-west-2")  # the environment wins, as in boto3
    assert Session().boto_region_name == "us-west-2"


def test_boto_session_gives_the_region(clean_env):
    import boto3

    given = boto3.Session(region_name="ca-central-1")
    session = Session(boto_session=given)
    assert session.boto_region_name == "ca-central-1"
    assert session.boto_session is given
    assert Session(region="eu-north-1").boto_session.region_name == "eu-north-1"


def test_bucket_and_prefix_from_the_sagemaker_config(clean_env, tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text(textwrap.dedent("""\
        SchemaVersion: '1.0'
        SageMaker:
          PythonSDK:
            Modules:
              Session:
                DefaultS3Bucket: team-bucket
                DefaultS3ObjectKeyPrefix: /ml/churn/
        """))
    clean_env.setenv("STEPFLOW_CONFIG", str(config))
    session = Session()
    assert session.default_bucket() == "team-bucket"
    assert session.default_bucket_prefix == "ml/churn"


def test_bucket_and_prefix_given_to_the_session_make_the_store(clean_env):
    session = Session(default_bucket="given", default_bucket_prefix="team")
    assert session.default_bucket() == "given"
    assert session.default_bucket_prefix == "team"
    assert session.s3_root_uri == "s3://given/team"


def test_region_and_bucket_from_an_s3_store(s3_env):
    session = Session()
    assert session.boto_region_name == s3_env.region
    assert session.default_bucket() == s3_env.bucket
    assert session.default_bucket_prefix == "stepflow"  # s3_env.root_uri is s3://<bucket>/stepflow


def test_upload_list_read_and_download(s3_env, tmp_path):
    from stepflow.s3 import S3Downloader, S3Uploader

    data = tmp_path / "data"
    (data / "nested").mkdir(parents=True)
    (data / "train.csv").write_text("a,b\n1,2\n")
    (data / "nested" / "test.csv").write_text("a,b\n3,4\n")
    session = Session()
    bucket = session.default_bucket()

    # A file: s3://<bucket>/<default prefix>/<key_prefix>/<name>, as the SDK returns it.
    uri = session.upload_data(str(data / "train.csv"), key_prefix="churn/raw")
    assert uri == f"s3://{bucket}/stepflow/churn/raw/train.csv"
    # A folder, recursively, to an explicit bucket: the prefix's URI.
    uri = session.upload_data(str(data), bucket=bucket, key_prefix="copy")
    assert uri == f"s3://{bucket}/copy"
    assert sorted(session.list_s3_files(bucket, "copy/")) == ["copy/nested/test.csv", "copy/train.csv"]
    assert session.read_s3_file(bucket, "copy/nested/test.csv") == "a,b\n3,4\n"
    # The objects are really there, as another S3 client sees them.
    listed = s3_env.client().list_objects_v2(Bucket=bucket, Prefix="stepflow/churn/")
    assert [o["Key"] for o in listed["Contents"]] == ["stepflow/churn/raw/train.csv"]

    assert S3Downloader.list(f"s3://{bucket}/copy", sagemaker_session=session) == [
        f"s3://{bucket}/copy/nested/test.csv", f"s3://{bucket}/copy/train.csv"]
    assert S3Downloader.read_file(f"s3://{bucket}/copy/train.csv", session) == "a,b\n1,2\n"
    S3Uploader.upload_string_as_file_body("hello", f"s3://{bucket}/notes/n.txt",
                                          sagemaker_session=session)
    assert S3Downloader.read_bytes(f"s3://{bucket}/notes/n.txt", session) == b"hello"
    assert S3Uploader.upload(str(data / "train.csv"), f"s3://{bucket}/up", sagemaker_session=session) \
        == f"s3://{bucket}/up/train.csv"
    # As the SDK: below the prefix for a folder, the name alone for a file.
    local = tmp_path / "down"
    paths = S3Downloader.download(f"s3://{bucket}/copy", str(local), sagemaker_session=session)
    assert sorted(paths) == [str(local / "nested" / "test.csv"), str(local / "train.csv")]
    assert (local / "nested" / "test.csv").read_text() == "a,b\n3,4\n"
    one = session.download_data(str(tmp_path / "one"), bucket, "copy/nested/test.csv")
    assert one == [str(tmp_path / "one" / "test.csv")]


def test_upload_refuses_what_it_cannot_honour(clean_env, tmp_path):
    from stepflow.s3 import S3Uploader

    (tmp_path / "f").write_text("x")
    with pytest.raises(ValueError, match="extra_args"):
        Session().upload_data(str(tmp_path / "f"), bucket="b", extra_args={"ACL": "public-read"})
    with pytest.raises(ValidationError, match="kms_key is not supported"):
        S3Uploader.upload(str(tmp_path / "f"), "s3://b/k", kms_key="alias/x")
    with pytest.raises(FileNotFoundError, match="neither a file nor a folder"):
        Session().upload_data(str(tmp_path / "missing"), bucket="b")


def test_get_execution_role(clean_env, tmp_path):
    assert get_execution_role() == DEFAULT_ROLE_ARN
    config = tmp_path / "config.yaml"
    config.write_text("SchemaVersion: '1.0'\nSageMaker:\n  Pipeline:\n"
                      "    RoleArn: arn:aws:iam::111122223333:role/pipelines\n")
    clean_env.setenv("STEPFLOW_CONFIG", str(config))
    assert get_execution_role() == "arn:aws:iam::111122223333:role/pipelines"
    clean_env.setenv("STEPFLOW_ROLE_ARN", "arn:aws:iam::111122223333:role/steps")
    assert get_execution_role(Session(), use_default=True) == "arn:aws:iam::111122223333:role/steps"


def test_describe_processing_job_says_why_not(clean_env):
    with pytest.raises(BackendError, match="runs no SageMaker processing jobs") as info:
        Session().describe_processing_job("preprocess-2026")
    assert info.value.reason == "ProcessingJobNotFound"


def test_unknown_sagemaker_client_calls_name_the_supported_ones(clean_env):
    with pytest.raises(AttributeError, match="describe_pipeline_execution"):
        Session().sagemaker_client.create_training_job  # noqa: B018


def test_a_given_sagemaker_client_is_used(clean_env):
    sentinel = object()
    assert Session(sagemaker_client=sentinel).sagemaker_client is sentinel
