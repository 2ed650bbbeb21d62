"""The kubernetes backend's settings from environment variables: one reading for the
operator (the chart's ConfigMap sets them) and for ``stepflow run --backend kubernetes``."""

from __future__ import annotations

from collections.abc import Mapping

from stepflow.backends.kubernetes.failures import Patience
from stepflow.backends.kubernetes.jobspec import StepPodSettings
from stepflow.backends.kubernetes.resources import load_table
from stepflow.errors import ConfigurationError
from stepflow.timefmt import parse_duration

RUNNER_IMAGE_ENV = "STEPFLOW_RUNNER_IMAGE"


def step_pods_from_env(env: Mapping[str, str]) -> StepPodSettings | None:
    """Step pod settings, or None when no runner image is configured (the backend is off)."""
    image = env.get(RUNNER_IMAGE_ENV)
    if not image:
        return None
    return StepPodSettings(
        runner_image=image, image_pull_policy=env.get("STEPFLOW_RUNNER_PULL_POLICY") or "IfNotPresent",
        s3_credentials_secret=env.get("STEPFLOW_STEP_S3_CREDENTIALS_SECRET") or None,
        s3_endpoint_url=env.get("STEPFLOW_S3_ENDPOINT_URL") or None, region=env.get("AWS_REGION") or None,
        integrity_key_secret=env.get("STEPFLOW_STEP_INTEGRITY_KEY_SECRET") or None,
        ttl_seconds_after_finished=_positive_int(env, "STEPFLOW_STEP_TTL_SECONDS") or 3600,
        max_parallel_jobs=_positive_int(env, "STEPFLOW_STEP_MAX_PARALLEL_JOBS"),
        instance_types=load_table(env.get("STEPFLOW_INSTANCE_TYPES_FILE")))


def patience_from_env(env: Mapping[str, str]) -> Patience:
    return Patience(
        image_pull=parse_duration(env.get("STEPFLOW_STEP_IMAGE_PULL_TIMEOUT"),
                                  "STEPFLOW_STEP_IMAGE_PULL_TIMEOUT", 60.0),
        unschedulable=parse_duration(env.get("STEPFLOW_STEP_UNSCHEDULABLE_TIMEOUT"),
                                     "STEPFLOW_STEP_UNSCHEDULABLE_TIMEOUT", 300.0))


def _positive_int(env: Mapping[str, str], name: str) -> int | None:
    raw = env.get(name)
    if not raw:
        return None
    if not raw.isdigit() or int(raw) < 1:
        raise ConfigurationError(f"{name}={raw!r} is not a positive integer; unset it or give a number such as 10",
                                 reason="InvalidConfig")
    return int(raw)
