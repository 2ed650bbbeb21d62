"""``stepflow.utils``: the name helpers of ``sagemaker.utils`` that pipelines use.

Ported code builds job, model and pipeline names with these (``unique_name_from_base`` in
AWS's @step notebooks); the formats are the SDK's, so the names look the same.
"""

from __future__ import annotations

import re
import secrets
import time

__all__ = ["base_from_name", "base_name_from_image", "name_from_base", "sagemaker_short_timestamp",
           "sagemaker_timestamp", "unique_name_from_base", "unique_name_from_base_uuid4"]


def sagemaker_timestamp() -> str:
    """``2026-12-01-01-30-00-123``: UTC, to the millisecond."""
    moment = time.time()
    millis = int((moment % 1) * 1000)
    return time.strftime(f"%Y-%m-%d-%H-%M-%S-{millis:03d}", time.gmtime(moment))


def sagemaker_short_timestamp() -> str:
    """``261201-0130``: local time to the minute, as the SDK writes it."""
    return time.strftime("%y%m%d-%H%M")


def name_from_base(base: str, max_length: int = 63, short: bool = False) -> str:
    """``base`` plus a timestamp, ``base`` trimmed so the whole fits ``max_length``."""
    timestamp = sagemaker_short_timestamp() if short else sagemaker_timestamp()
    return f"{base[:max_length - len(timestamp) - 1]}-{timestamp}"


def unique_name_from_base(base: str, max_length: int = 63) -> str:
    """``<base>-<epoch seconds>-<4 hex digits>``, ``base`` trimmed to fit ``max_length``."""
    unique = secrets.token_hex(2)
    ts = str(int(time.time()))
    return f"{base[:max_length - 2 - len(ts) - len(unique)]}-{ts}-{unique}"


def unique_name_from_base_uuid4(base: str, max_length: int = 63) -> str:
    """``<base>-<uuid4>``, ``base`` trimmed to fit ``max_length``."""
    import uuid

    unique = str(uuid.uuid4())
    return f"{base[:max_length - len(unique) - 1]}-{unique}"


def base_name_from_image(image: str, default_base_name: str | None = None) -> str:
    """The algorithm name in an image URI: ``.../sagemaker-xgboost:1.7-1`` → ``sagemaker-xgboost``.

    A pipeline variable has no name yet: its default value's, else ``default_base_name``.
    """
    from stepflow.workflow.entities import PipelineVariable

    if isinstance(image, PipelineVariable):
        default = getattr(image, "default_value", None)
        if not isinstance(default, str) or not default:
            return default_base_name or "base_name"
        image = default
    match = re.match(r"^(.+/)?([^:/]+)(:[^:]+)?$", image)
    return match.group(2) if match else image


def base_from_name(name: str) -> str:
    """Undo :func:`name_from_base`: the name without its timestamp."""
    match = re.match(r"^(.+)-(\d{4}-\d{2}-\d{2}-\d{2}-\d{2}-\d{2}-\d{3}|\d{6}-\d{4})", name)
    return match.group(1) if match else name
