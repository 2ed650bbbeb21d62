"""Fixtures for the SageMaker-API tests: an environment without anyone's configuration."""

from __future__ import annotations

import pytest

_CONFIG_VARS = ("STEPFLOW_CONFIG", "STEPFLOW_S3_ROOT_URI", "STEPFLOW_S3_ENDPOINT_URL",
                "STEPFLOW_ROLE_ARN", "STEPFLOW_INTEGRITY_KEY", "STEPFLOW_INTEGRITY_KEY_FILE",
                "SAGEMAKER_ADMIN_CONFIG_OVERRIDE", "SAGEMAKER_USER_CONFIG_OVERRIDE",
                "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE", "AWS_CONFIG_FILE")


@pytest.fixture
def clean_env(tmp_path, monkeypatch, step_env):
    """No configuration file, no region, a store in ``tmp_path/store``; returns the env."""
    for name in _CONFIG_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "home" / ".config"))
    monkeypatch.setenv("STEPFLOW_ADMIN_CONFIG", "")
    monkeypatch.setenv("STEPFLOW_USER_CONFIG", "")
    monkeypatch.setenv("SAGEMAKER_ADMIN_CONFIG_OVERRIDE", "")
    monkeypatch.setenv("SAGEMAKER_USER_CONFIG_OVERRIDE", "")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("STEPFLOW_S3_ROOT_URI", (tmp_path / "store").as_uri())
    return monkeypatch


@pytest.fixture
def s3_env(clean_env, s3):
    """``clean_env`` with the store on the real S3 server (``s3.root_uri``)."""
    for name, value in s3.env().items():
        clean_env.setenv(name, value)
    clean_env.setenv("STEPFLOW_S3_ROOT_URI", s3.root_uri)
    return s3
