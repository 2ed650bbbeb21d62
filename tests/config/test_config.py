"""Configuration: SageMaker-compatible YAML files, layered, overridden by the environment."""

from __future__ import annotations

import textwrap
from pathlib import Path

import platformdirs
import pytest

from stepflow.config import default_s3_root_uri, load_config, user_config_path
from stepflow.errors import ConfigurationError

HEX_KEY = "0123456789abcdef" * 4  # 32 bytes

SAGEMAKER_FILE = """\
SchemaVersion: '1.0'
SageMaker:
  PythonSDK:
    Modules:
      RemoteFunction:
        Dependencies: ./requirements.txt
        PreExecutionCommands: ["echo hi"]
        EnvironmentVariables: {STAGE: prod, LEVEL: "3"}
        ImageUri: 123456789012.dkr.ecr.us-east-1.amazonaws.com/ml:latest
        IncludeLocalWorkDir: true
        CustomFileFilter:
          IgnoreNamePatterns: ["data/*", "*.ipynb"]
        InstanceType: ml.m5.xlarge
        JobCondaEnvironment: ml
        RoleArn: arn:aws:iam::123456789012:role/ml
        S3KmsKeyId: kms-s3
        S3RootUri: s3://ml-artifacts/pipelines
        Tags: [{Key: team, Value: churn}]
        VolumeKmsKeyId: kms-volume
        VpcConfig: {Subnets: [subnet-1], SecurityGroupIds: [sg-1]}
        EnableInterContainerTrafficEncryption: true
  Pipeline:
    RoleArn: arn:aws:iam::123456789012:role/pipelines
    Tags: [{Key: owner, Value: ds}]
  TrainingJob:
    EnableNetworkIsolation: true
"""


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def _env(**extra: str) -> dict[str, str]:
    """An environment with the admin and user layers switched off unless a test sets them."""
    return {"STEPFLOW_ADMIN_CONFIG": "", "STEPFLOW_USER_CONFIG": "",
            "SAGEMAKER_ADMIN_CONFIG_OVERRIDE": "", "SAGEMAKER_USER_CONFIG_OVERRIDE": "", **extra}


def test_nothing_configured_uses_a_folder_in_the_user_data_directory():
    config = load_config(_env())
    assert config.s3_root_uri == default_s3_root_uri()
    assert config.s3_root_uri == (platformdirs.user_data_path("stepflow") / "store").as_uri()
    assert config.s3_endpoint_url is None
    assert config.integrity_key is None
    assert config.remote_function == {} and config.pipeline == {}
    assert config.files == ()
    assert config.origins["s3_root_uri"] == "default"


def test_a_sagemaker_config_file_is_read_unchanged(tmp_path):
    path = _write(tmp_path / "sagemaker.yaml", SAGEMAKER_FILE)
    config = load_config(_env(STEPFLOW_CONFIG=str(path)))
    assert config.s3_root_uri == "s3://ml-artifacts/pipelines"
    assert config.origins["s3_root_uri"] == str(path)
    rf = config.remote_function
    assert "S3RootUri" not in rf
    assert rf["InstanceType"] == "ml.m5.xlarge"
    assert rf["IncludeLocalWorkDir"] is True
    assert rf["EnvironmentVariables"] == {"STAGE": "prod", "LEVEL": "3"}
    assert rf["CustomFileFilter"] == {"IgnoreNamePatterns": ["data/*", "*.ipynb"]}
    assert rf["VpcConfig"] == {"Subnets": ["subnet-1"], "SecurityGroupIds": ["sg-1"]}
    assert rf["Tags"] == [{"Key": "team", "Value": "churn"}]
    assert rf["EnableInterContainerTrafficEncryption"] is True
    assert len(rf) == 14  # every RemoteFunction key of the file except S3RootUri
    assert config.pipeline == {
        "RoleArn": "arn:aws:iam::123456789012:role/pipelines",
        "Tags": [{"Key": "owner", "Value": "ds"}],
    }
    assert config.files == (path,)


def test_layers_admin_then_user_then_stepflow_config(tmp_path):
    admin = _write(tmp_path / "admin.yaml", """\
        SageMaker:
          PythonSDK:
            Modules:
              RemoteFunction:
                InstanceType: ml.m5.large
                ImageUri: admin-image
                EnvironmentVariables: {A: admin, B: admin}
                PreExecutionCommands: [admin-1, admin-2]
        """)
    user = _write(tmp_path / "user.yaml", """\
        SageMaker:
          PythonSDK:
            Modules:
              RemoteFunction:
                InstanceType: ml.m5.xlarge
                EnvironmentVariables: {B: user}
                PreExecutionCommands: [user-1]
        """)
    project = _write(tmp_path / "project.yaml", """\
        SageMaker:
          PythonSDK:
            Modules:
              RemoteFunction:
                EnvironmentVariables: {C: project}
        """)
    config = load_config({
        "STEPFLOW_ADMIN_CONFIG": str(admin), "STEPFLOW_USER_CONFIG": str(user),
        "STEPFLOW_CONFIG": str(project),
    })
    rf = config.remote_function
    assert rf["InstanceType"] == "ml.m5.xlarge"
    assert rf["ImageUri"] == "admin-image"
    assert rf["EnvironmentVariables"] == {"A": "admin", "B": "user", "C": "project"}
    assert rf["PreExecutionCommands"] == ["user-1"]  # lists are replaced, not merged
    assert config.files == (admin, user, project)
    assert config.origins["remote_function.InstanceType"] == str(user)
    assert config.origins["remote_function.ImageUri"] == str(admin)


def test_the_default_user_file_is_read(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    path = user_config_path()
    assert path == tmp_path / "xdg" / "stepflow" / "config.yaml"
    _write(path, """\
        Stepflow:
          S3EndpointUrl: http://minio.local:9000
        """)
    config = load_config({"STEPFLOW_ADMIN_CONFIG": ""})
    assert config.s3_endpoint_url == "http://minio.local:9000"
    assert config.files == (path,)


def test_environment_overrides_files(tmp_path):
    path = _write(tmp_path / "c.yaml", SAGEMAKER_FILE + "Stepflow:\n  S3EndpointUrl: http://file:1\n")
    config = load_config(_env(
        STEPFLOW_CONFIG=str(path),
        STEPFLOW_S3_ROOT_URI="s3://from-env/root",
        STEPFLOW_S3_ENDPOINT_URL="http://env:2",
        STEPFLOW_INSTANCE_TYPE="ml.c5.large",
        STEPFLOW_IMAGE_URI="env-image",
        STEPFLOW_ROLE_ARN="arn:aws:iam::123456789012:role/env",
        STEPFLOW_INCLUDE_LOCAL_WORKDIR="false",
    ))
    assert config.s3_root_uri == "s3://from-env/root"
    assert config.origins["s3_root_uri"] == "env STEPFLOW_S3_ROOT_URI"
    assert config.s3_endpoint_url == "http://env:2"
    assert config.remote_function["InstanceType"] == "ml.c5.large"
    assert config.remote_function["ImageUri"] == "env-image"
    assert config.remote_function["RoleArn"] == "arn:aws:iam::123456789012:role/env"
    assert config.remote_function["IncludeLocalWorkDir"] is False
    assert config.origins["remote_function.InstanceType"] == "env STEPFLOW_INSTANCE_TYPE"
    # Untouched keys still come from the file.
    assert config.remote_function["JobCondaEnvironment"] == "ml"


def test_empty_environment_values_count_as_unset(tmp_path):
    path = _write(tmp_path / "c.yaml", SAGEMAKER_FILE)
    config = load_config(_env(STEPFLOW_CONFIG=str(path), STEPFLOW_S3_ROOT_URI="",
                              STEPFLOW_INSTANCE_TYPE=""))
    assert config.s3_root_uri == "s3://ml-artifacts/pipelines"
    assert config.remote_function["InstanceType"] == "ml.m5.xlarge"


def test_bad_boolean_in_environment():
    with pytest.raises(ConfigurationError, match="STEPFLOW_INCLUDE_LOCAL_WORKDIR='maybe' is not a boolean"):
        load_config(_env(STEPFLOW_INCLUDE_LOCAL_WORKDIR="maybe"))


def test_session_default_bucket_and_prefix_give_the_root(tmp_path):
    path = _write(tmp_path / "c.yaml", """\
        SageMaker:
          PythonSDK:
            Modules:
              Session:
                DefaultS3Bucket: team-bucket
                DefaultS3ObjectKeyPrefix: /ml/
        """)
    assert load_config(_env(STEPFLOW_CONFIG=str(path))).s3_root_uri == "s3://team-bucket/ml"


# --- integrity key ---------------------------------------------------------------------------

def test_integrity_key_from_environment_is_hex_and_hidden_from_repr():
    config = load_config(_env(STEPFLOW_INTEGRITY_KEY=HEX_KEY.upper()))
    assert config.integrity_key == bytes.fromhex(HEX_KEY)
    assert HEX_KEY not in repr(config).lower()
    assert repr(config.integrity_key) not in repr(config)
    assert config.origins["integrity_key"] == "env STEPFLOW_INTEGRITY_KEY"


def test_integrity_key_from_a_file(tmp_path):
    key_file = tmp_path / "key"
    key_file.write_text(HEX_KEY + "\n")
    assert load_config(_env(STEPFLOW_INTEGRITY_KEY_FILE=str(key_file))).integrity_key == \
        bytes.fromhex(HEX_KEY)
    path = _write(tmp_path / "c.yaml", f"Stepflow:\n  IntegrityKeyFile: {key_file}\n")
    config = load_config(_env(STEPFLOW_CONFIG=str(path)))
    assert config.integrity_key == bytes.fromhex(HEX_KEY)
    assert str(path) in config.origins["integrity_key"]


@pytest.mark.parametrize(
    ("value", "message"),
    [("not-hex-" * 8, "not hexadecimal"), ("abc", "not hexadecimal"), ("00" * 8, "is 8 bytes")],
)
def test_bad_integrity_keys_are_refused_without_echoing_them(value, message):
    with pytest.raises(ConfigurationError, match=message) as info:
        load_config(_env(STEPFLOW_INTEGRITY_KEY=value))
    assert value not in str(info.value)
    assert "openssl rand -hex 32" in str(info.value)


def test_both_key_sources_is_ambiguous(tmp_path):
    with pytest.raises(ConfigurationError, match="set only one"):
        load_config(_env(STEPFLOW_INTEGRITY_KEY=HEX_KEY, STEPFLOW_INTEGRITY_KEY_FILE="/x"))


def test_unreadable_key_file(tmp_path):
    with pytest.raises(ConfigurationError, match="Cannot read the integrity key file"):
        load_config(_env(STEPFLOW_INTEGRITY_KEY_FILE=str(tmp_path / "missing")))


# --- mistakes in files -----------------------------------------------------------------------

def test_unknown_key_names_key_file_line_and_a_suggestion(tmp_path):
    path = _write(tmp_path / "c.yaml", """\
        SchemaVersion: '1.0'
        SageMaker:
          PythonSDK:
            Modules:
              RemoteFunction:
                InstanceType: ml.m5.large
                InstanceTyp: ml.m5.xlarge
        """)
    with pytest.raises(ConfigurationError) as info:
        load_config(_env(STEPFLOW_CONFIG=str(path)))
    error = info.value
    assert "Unknown configuration key SageMaker.PythonSDK.Modules.RemoteFunction.InstanceTyp" in str(error)
    assert "Did you mean InstanceType?" in str(error)
    assert (error.location.file, error.location.line) == (str(path), 7)


def test_unknown_top_level_key(tmp_path):
    path = _write(tmp_path / "c.yaml", "stepflow:\n  s3_root_uri: s3://x/y\n")
    with pytest.raises(ConfigurationError, match="Unknown configuration key stepflow .*Did you mean Stepflow") as info:
        load_config(_env(STEPFLOW_CONFIG=str(path)))
    assert info.value.location.line == 1


@pytest.mark.parametrize(
    ("yaml_text", "message"),
    [
        ("SageMaker:\n  PythonSDK:\n    Modules:\n      RemoteFunction:\n        IncludeLocalWorkDir: 'yes'\n",
         "IncludeLocalWorkDir in .* must be true or false"),
        ("SageMaker:\n  PythonSDK:\n    Modules:\n      RemoteFunction:\n        EnvironmentVariables: {A: 1}\n",
         "EnvironmentVariables in .* must be a map of strings"),
        ("SageMaker:\n  PythonSDK:\n    Modules:\n      RemoteFunction:\n        Tags: [{Key: a}]\n",
         "Tags in .* must be a list of {Key"),
        ("SageMaker:\n  PythonSDK:\n    Modules:\n      RemoteFunction:\n        VpcConfig: [a]\n",
         "VpcConfig in .* must be a mapping with keys: Subnets, SecurityGroupIds"),
        ("SchemaVersion: '2.0'\n", 'SchemaVersion in .* must be "1.0"'),
        ("- a\n- b\n", "must contain a YAML mapping"),
    ],
)
def test_wrong_types_name_the_key_and_the_file(tmp_path, yaml_text, message):
    path = _write(tmp_path / "c.yaml", yaml_text)
    with pytest.raises(ConfigurationError, match=message) as info:
        load_config(_env(STEPFLOW_CONFIG=str(path)))
    assert info.value.location.file == str(path)


def test_invalid_yaml_points_at_the_line(tmp_path):
    path = _write(tmp_path / "c.yaml", "Stepflow:\n  S3EndpointUrl: [unclosed\n")
    with pytest.raises(ConfigurationError, match="not valid YAML") as info:
        load_config(_env(STEPFLOW_CONFIG=str(path)))
    assert info.value.location.file == str(path) and info.value.location.line == 3


def test_missing_named_file_is_an_error_but_missing_default_files_are_not(tmp_path, monkeypatch):
    with pytest.raises(ConfigurationError, match=r"Cannot read configuration file .*missing\.yaml"):
        load_config(_env(STEPFLOW_CONFIG=str(tmp_path / "missing.yaml")))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "empty"))
    assert load_config({"STEPFLOW_ADMIN_CONFIG": ""}).files == ()


def test_invalid_root_uri_says_where_it_came_from(tmp_path):
    path = _write(tmp_path / "c.yaml", """\
        SageMaker:
          PythonSDK:
            Modules:
              RemoteFunction:
                S3RootUri: relative/folder
        """)
    with pytest.raises(ConfigurationError, match=f"relative path.*s3_root_uri from {path}"):
        load_config(_env(STEPFLOW_CONFIG=str(path)))
    with pytest.raises(ConfigurationError, match="no bucket.*from env STEPFLOW_S3_ROOT_URI"):
        load_config(_env(STEPFLOW_S3_ROOT_URI="s3://"))


def test_an_empty_file_is_allowed(tmp_path):
    path = _write(tmp_path / "c.yaml", "# nothing yet\n")
    assert load_config(_env(STEPFLOW_CONFIG=str(path))).files == (path,)
