"""Retry policies of a step (``RetryPolicies`` in docs/SAGEMAKER-COMPATIBILITY.md, "Function
steps")."""

from __future__ import annotations

from collections.abc import Sequence
from enum import Enum
from typing import Any

from stepflow.errors import ValidationError


class StepExceptionTypeEnum(Enum):
    SERVICE_FAULT = "Step.SERVICE_FAULT"
    THROTTLING = "Step.THROTTLING"


class SageMakerJobExceptionTypeEnum(Enum):
    INTERNAL_ERROR = "SageMaker.JOB_INTERNAL_ERROR"
    CAPACITY_ERROR = "SageMaker.CAPACITY_ERROR"
    RESOURCE_LIMIT = "SageMaker.RESOURCE_LIMIT"


class RetryPolicy:
    """Backoff settings shared by all policies; exactly one of max_attempts/expire_after_mins."""

    def __init__(self, backoff_rate: float = 2.0, interval_seconds: int = 1,
                 max_attempts: int | None = None, expire_after_mins: int | None = None) -> None:
        if (max_attempts is None) == (expire_after_mins is None):
            raise ValidationError(
                "A retry policy needs exactly one of max_attempts=... (1-20) or "
                "expire_after_mins=... (0-14400).")
        if max_attempts is not None and not 1 <= max_attempts <= 20:
            raise ValidationError(f"max_attempts must be between 1 and 20, got {max_attempts}.")
        if expire_after_mins is not None and not 0 <= expire_after_mins <= 14400:
            raise ValidationError(
                f"expire_after_mins must be between 0 and 14400, got {expire_after_mins}.")
        if backoff_rate < 0 or interval_seconds < 0:
            raise ValidationError("backoff_rate and interval_seconds must not be negative.")
        self.backoff_rate = backoff_rate
        self.interval_seconds = interval_seconds
        self.max_attempts = max_attempts
        self.expire_after_mins = expire_after_mins

    def _exception_types(self) -> list[str]:
        raise NotImplementedError

    def to_request(self) -> dict[str, Any]:
        request: dict[str, Any] = {"BackoffRate": float(self.backoff_rate),
                                   "IntervalSeconds": self.interval_seconds}
        if self.max_attempts is not None:
            request["MaxAttempts"] = self.max_attempts
        else:
            request["ExpireAfterMin"] = self.expire_after_mins
        request["ExceptionType"] = self._exception_types()
        return request


class StepRetryPolicy(RetryPolicy):
    """Retry on pipeline-service faults of any step."""

    def __init__(self, exception_types: Sequence[StepExceptionTypeEnum], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.exception_types = list(exception_types)

    def _exception_types(self) -> list[str]:
        return [e.value for e in self.exception_types]


class SageMakerJobStepRetryPolicy(RetryPolicy):
    """Retry a job step on job failures (internal error, capacity, resource limit)."""

    def __init__(self, exception_types: Sequence[SageMakerJobExceptionTypeEnum] | None = None,
                 failure_reason_types: Sequence[SageMakerJobExceptionTypeEnum] | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.exception_types = list(exception_types or []) + list(failure_reason_types or [])
        if not self.exception_types:
            raise ValidationError(
                "SageMakerJobStepRetryPolicy needs exception_types=[...], e.g. "
                "[SageMakerJobExceptionTypeEnum.CAPACITY_ERROR].")

    def _exception_types(self) -> list[str]:
        return [e.value for e in self.exception_types]
