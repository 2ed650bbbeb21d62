"""Values used when neither the decorator nor the configuration gives one.

The SageMaker SDK refuses to compile without a role, an instance type and (outside
SageMaker's own images) an image. Stepflow compiles anyway so that local and in-cluster
runs need no AWS settings; these placeholders keep the definition well-formed, and a
SageMaker backend rejects them at upsert with a message naming the setting to provide.
"""

from __future__ import annotations

import os
import sys

DEFAULT_ROLE_ARN = "arn:aws:iam::000000000000:role/stepflow-unset-role"
DEFAULT_INSTANCE_TYPE = "ml.m5.large"
DEFAULT_REGION = "us-east-1"


def default_image_uri() -> str:
    """An image with only Python and pip, of the compiling Python's minor version."""
    return f"python:{sys.version_info.major}.{sys.version_info.minor}-slim"


def default_region() -> str:
    """Where boto3 would look: ``AWS_REGION``, ``AWS_DEFAULT_REGION``, then the region of
    the AWS profile in use (``~/.aws/config`` or ``AWS_CONFIG_FILE``); else us-east-1."""
    return (os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
            or _profile_region() or DEFAULT_REGION)


def _profile_region() -> str | None:
    config_file = os.environ.get("AWS_CONFIG_FILE") or os.path.expanduser("~/.aws/config")
    if not os.path.isfile(config_file):
        return None  # spare the import of botocore when there is nothing to read
    import botocore.exceptions
    import botocore.session

    try:
        region = botocore.session.Session().get_config_variable("region")
    except botocore.exceptions.BotoCoreError:  # e.g. AWS_PROFILE names a missing profile
        return None
    return region if isinstance(region, str) and region else None
