"""SageMaker's config locations, honoured beside ours (issue 10, bug 7).

Every AWS notebook sets ``SAGEMAKER_USER_CONFIG_OVERRIDE`` to its own ``config.yaml``;
the precedence is SageMaker admin < stepflow admin < SageMaker user < stepflow user <
``STEPFLOW_CONFIG`` < environment (docs/CONFIGURATION.md).
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from stepflow.config import load_config, sagemaker_admin_config_path, sagemaker_user_config_path
from stepflow.errors import ConfigurationError

NOTEBOOK_CONFIG = """\
SchemaVersion: '1.0'
SageMaker:
  PythonSDK:
    Modules:
      Session:
        DefaultS3Bucket: notebook-bucket
        DefaultS3ObjectKeyPrefix: churn
      RemoteFunction:
        Dependencies: ./requirements.txt
        IncludeLocalWorkDir: true
        InstanceType: ml.m5.xlarge
"""


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def _instance_type(value: str) -> str:
    return ("SageMaker:\n  PythonSDK:\n    Modules:\n      RemoteFunction:\n"
            f"        InstanceType: {value}\n")


def _isolated(tmp_path: Path, **extra: str) -> dict[str, str]:
    """Default locations inside ``tmp_path`` (XDG dirs), every override unset."""
    return {"XDG_CONFIG_HOME": str(tmp_path / "home-config"),
            "XDG_CONFIG_DIRS": str(tmp_path / "etc-xdg"), **extra}


def test_the_notebooks_user_config_override_is_read(tmp_path):
    path = _write(tmp_path / "notebook" / "config.yaml", NOTEBOOK_CONFIG)
    config = load_config({"STEPFLOW_ADMIN_CONFIG": "", "STEPFLOW_USER_CONFIG": "",
                          "SAGEMAKER_ADMIN_CONFIG_OVERRIDE": "",
                          "SAGEMAKER_USER_CONFIG_OVERRIDE": str(path)})
    assert config.remote_function == {"Dependencies": "./requirements.txt",
                                      "IncludeLocalWorkDir": True, "InstanceType": "ml.m5.xlarge"}
    assert config.session == {"DefaultS3Bucket": "notebook-bucket",
                              "DefaultS3ObjectKeyPrefix": "churn"}
    assert config.s3_root_uri == "s3://notebook-bucket/churn"
    assert config.origins["remote_function.InstanceType"] == str(path)


def test_an_override_naming_a_folder_reads_its_config_yaml(tmp_path):
    folder = tmp_path / "admin"
    _write(folder / "config.yaml", _instance_type("ml.c5.large"))
    config = load_config({"STEPFLOW_ADMIN_CONFIG": "", "STEPFLOW_USER_CONFIG": "",
                          "SAGEMAKER_USER_CONFIG_OVERRIDE": "",
                          "SAGEMAKER_ADMIN_CONFIG_OVERRIDE": str(folder)})
    assert config.remote_function["InstanceType"] == "ml.c5.large"


def test_the_sdks_default_locations_are_read(tmp_path, monkeypatch):
    env = _isolated(tmp_path, STEPFLOW_ADMIN_CONFIG="", STEPFLOW_USER_CONFIG="")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert sagemaker_user_config_path() == tmp_path / "home-config" / "sagemaker" / "config.yaml"
    assert sagemaker_admin_config_path() == tmp_path / "etc-xdg" / "sagemaker" / "config.yaml"
    assert load_config(env).remote_function == {}  # neither file exists: nothing, no error
    _write(sagemaker_admin_config_path(), _instance_type("ml.admin"))
    assert load_config(env).remote_function["InstanceType"] == "ml.admin"
    _write(sagemaker_user_config_path(), _instance_type("ml.user"))
    assert load_config(env).remote_function["InstanceType"] == "ml.user"


def test_precedence_of_every_layer(tmp_path):
    files = {name: _write(tmp_path / f"{name}.yaml", _instance_type(f"ml.{name}"))
             for name in ("sm_admin", "sf_admin", "sm_user", "sf_user", "project")}
    layers = [("SAGEMAKER_ADMIN_CONFIG_OVERRIDE", "sm_admin"), ("STEPFLOW_ADMIN_CONFIG", "sf_admin"),
              ("SAGEMAKER_USER_CONFIG_OVERRIDE", "sm_user"), ("STEPFLOW_USER_CONFIG", "sf_user"),
              ("STEPFLOW_CONFIG", "project")]
    env = _isolated(tmp_path, **{var: "" for var, _ in layers})
    # Switch the layers on from the lowest: each new one wins over all before it.
    for var, name in layers:
        env[var] = str(files[name])
        config = load_config(env)
        assert config.remote_function["InstanceType"] == f"ml.{name}", var
        assert config.origins["remote_function.InstanceType"] == str(files[name])
    env["STEPFLOW_INSTANCE_TYPE"] = "ml.env"
    assert load_config(env).remote_function["InstanceType"] == "ml.env"


def test_maps_merge_across_sagemaker_and_stepflow_files(tmp_path):
    sm = _write(tmp_path / "sm.yaml", NOTEBOOK_CONFIG)
    ours = _write(tmp_path / "ours.yaml", _instance_type("ml.g5.xlarge"))
    config = load_config(_isolated(tmp_path, SAGEMAKER_USER_CONFIG_OVERRIDE=str(sm),
                                   STEPFLOW_USER_CONFIG=str(ours), STEPFLOW_ADMIN_CONFIG="",
                                   SAGEMAKER_ADMIN_CONFIG_OVERRIDE=""))
    assert config.remote_function["InstanceType"] == "ml.g5.xlarge"
    assert config.remote_function["Dependencies"] == "./requirements.txt"


def test_a_missing_override_is_an_error_naming_it(tmp_path):
    missing = tmp_path / "nope" / "config.yaml"
    with pytest.raises(ConfigurationError, match="SAGEMAKER_USER_CONFIG_OVERRIDE") as info:
        load_config(_isolated(tmp_path, SAGEMAKER_USER_CONFIG_OVERRIDE=str(missing)))
    assert str(missing) in info.value.message


def test_a_bad_key_in_a_sagemaker_file_points_into_it(tmp_path):
    path = _write(tmp_path / "sm.yaml", _instance_type("ml.m5.large").replace("InstanceType", "InstanceTyp"))
    with pytest.raises(ConfigurationError, match="Did you mean InstanceType") as info:
        load_config(_isolated(tmp_path, SAGEMAKER_USER_CONFIG_OVERRIDE=str(path)))
    assert info.value.location is not None and info.value.location.file == str(path)


def test_an_s3_override_is_read_from_the_bucket(tmp_path, s3, monkeypatch):
    s3.client().put_object(Bucket=s3.bucket, Key="team/config.yaml", Body=NOTEBOOK_CONFIG.encode())
    for name, value in s3.env().items():  # the S3 client reads its credentials from here
        monkeypatch.setenv(name, value)
    # A folder (its config.yaml) and a file, as the SDK allows both.
    env = _isolated(tmp_path, **s3.env(), STEPFLOW_ADMIN_CONFIG="", STEPFLOW_USER_CONFIG="",
                    SAGEMAKER_ADMIN_CONFIG_OVERRIDE=f"s3://{s3.bucket}/team",
                    SAGEMAKER_USER_CONFIG_OVERRIDE=f"s3://{s3.bucket}/team/config.yaml")
    config = load_config(env)
    assert config.session["DefaultS3Bucket"] == "notebook-bucket"
    assert config.files == (f"s3://{s3.bucket}/team", f"s3://{s3.bucket}/team/config.yaml")
