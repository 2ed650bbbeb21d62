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
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or DEFAULT_REGION
