"""The boto3 SageMaker client the backend uses, configured only the standard boto3 way.

Region, endpoint (``AWS_ENDPOINT_URL_SAGEMAKER``, ``AWS_ENDPOINT_URL``, the shared config
file's ``endpoint_url``), credentials and profile come from boto3's own chain: a user's
``~/.aws`` works as it does with the SageMaker SDK, and stepflow has no variable of its
own for any of them. Parameter validation stays on (botocore's default), so a request the
service model refuses fails here before it is sent. Throttling is retried by botocore's
``standard`` mode: exponential backoff with full jitter, on every throttling code.
"""

from __future__ import annotations

from typing import Any

from stepflow.errors import ConfigurationError

#: Attempts per call (the first included) for throttled and transient failures.
MAX_ATTEMPTS = 8


def sagemaker_client(region: str | None = None) -> Any:
    """A new SageMaker client from boto3's standard configuration (``region`` overrides it)."""
    import boto3
    from botocore.config import Config
    from botocore.exceptions import NoRegionError

    config = Config(parameter_validation=True, retries={"mode": "standard", "max_attempts": MAX_ATTEMPTS},
                    user_agent_extra="stepflow")
    try:
        return boto3.session.Session().client("sagemaker", region_name=region, config=config)
    except NoRegionError:
        raise ConfigurationError(
            "The sagemaker backend needs an AWS region and none is configured: set AWS_REGION "
            "(or AWS_DEFAULT_REGION), or `region` in ~/.aws/config.", reason="SageMakerRegionMissing") from None
