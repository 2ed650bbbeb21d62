"""Retry semantics: when a failed attempt gets another one, and when.

SageMaker has two layers: a training job's ``RetryStrategy`` (the service restarts the
job itself on an internal error) and the pipeline's ``RetryPolicies`` (the pipeline starts
the step again after a classified failure, with back-off). Our launchers report each
failure as ``User`` (the step's code raised, or exited 1) or ``Infrastructure`` (the
process could not run: killed, out of capacity, runtime exit 3, ...). They cannot tell a
throttle from a capacity error, so every retry-policy category (``Step.SERVICE_FAULT``,
``Step.THROTTLING``, ``SageMaker.JOB_INTERNAL_ERROR``, ``SageMaker.CAPACITY_ERROR``,
``SageMaker.RESOURCE_LIMIT``) matches every infrastructure failure.

The exact rules, applied when an attempt fails (attempts are numbered from 1):

1. A ``User`` failure is never retried (SageMaker retries neither a training job nor a
   step for an exception raised by the user's function). The step fails.
2. A failure while the execution is stopping is never retried.
3. ``RetryStrategy.MaximumRetryAttempts = M`` (Training steps; absent means 0): while fewer
   than ``M`` retries were granted by this rule, the next attempt is due immediately
   (``now``), like the service restarting the job.
4. Then ``RetryPolicies``, in definition order: the first policy with budget left grants
   the retry. A policy that already granted ``k`` retries has budget left when
   ``k < MaxAttempts`` (when set) and, when ``ExpireAfterMin`` is set, the retry would start
   no later than ``ExpireAfterMin`` minutes after the step's first attempt started. The
   next attempt is due ``IntervalSeconds * BackoffRate ** k`` seconds after the failure.
   Policies have separate budgets: ``MaxAttempts: 3`` and ``MaxAttempts: 2`` allow five
   policy retries in all.
5. Otherwise the step fails with its last attempt's reason.

Budgets are not reset between layers (a SageMaker pipeline retry starts a fresh training
job with a fresh ``RetryStrategy``; we deliberately keep the total bounded and readable:
at most ``1 + M + sum(MaxAttempts)`` attempts). While a retry is pending the step is
``Starting`` with ``next_attempt_at`` set; a stop request stops it at once; a failure
elsewhere in the execution does not cancel it (the step is still in progress, not new).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeGuard

from stepflow.errors import ValidationError

RETRY_EXCEPTION_TYPES = (
    "Step.SERVICE_FAULT",
    "Step.THROTTLING",
    "SageMaker.JOB_INTERNAL_ERROR",
    "SageMaker.CAPACITY_ERROR",
    "SageMaker.RESOURCE_LIMIT",
)
STRATEGY = "RetryStrategy"


@dataclass(frozen=True)
class RetryPolicy:
    """One item of a step's ``RetryPolicies``."""

    exception_types: tuple[str, ...]
    interval_seconds: float = 1.0
    backoff_rate: float = 2.0
    max_attempts: int | None = None
    expire_after_minutes: float | None = None


@dataclass(frozen=True)
class RetrySettings:
    """A step's retry budget, read once from its definition."""

    max_retry_attempts: int = 0
    policies: tuple[RetryPolicy, ...] = ()
    max_retry_parameter: str | None = None
    """Set when ``MaximumRetryAttempts`` is ``{"Get": "Parameters.<name>"}`` (an @step's
    ``max_retry_attempts=ParameterInteger(...)``): the execution's value decides."""

    def for_parameters(self, parameters: Mapping[str, Any]) -> RetrySettings:
        """These settings with a parameter-valued ``MaximumRetryAttempts`` resolved."""
        if self.max_retry_parameter is None:
            return self
        value = parameters.get(self.max_retry_parameter)
        return RetrySettings(max(0, value) if _is_int(value) else 0, self.policies)


def parse_retry_settings(step: Mapping[str, Any], where: str) -> RetrySettings:
    """Read ``Arguments.RetryStrategy`` and ``RetryPolicies``; reject what we cannot honour."""
    strategy = (step.get("Arguments") or {}).get("RetryStrategy") if step.get("Type") == "Training" else None
    max_retry, parameter = 0, None
    if strategy is not None:
        value = strategy.get("MaximumRetryAttempts") if isinstance(strategy, Mapping) else None
        reference = value.get("Get") if isinstance(value, Mapping) and len(value) == 1 else None
        if isinstance(reference, str) and reference.startswith("Parameters."):
            parameter = reference.removeprefix("Parameters.")
        elif not _is_int(value) or value < 0:
            raise ValidationError(
                f"{where}: RetryStrategy.MaximumRetryAttempts must be a whole number >= 0 or an "
                f"Integer parameter ({{'Get': 'Parameters.<name>'}}), got {value!r}")
        else:
            max_retry = value
    raw = step.get("RetryPolicies") or []
    if not isinstance(raw, list):
        raise ValidationError(f"{where}: RetryPolicies must be a list")
    return RetrySettings(max_retry, tuple(_parse_policy(p, f"{where}: RetryPolicies[{i}]")
                                          for i, p in enumerate(raw)), parameter)


def _parse_policy(raw: Any, where: str) -> RetryPolicy:
    if not isinstance(raw, Mapping):
        raise ValidationError(f"{where} must be an object")
    types = raw.get("ExceptionType")
    types = [types] if isinstance(types, str) else types
    if not isinstance(types, list) or not types:
        raise ValidationError(f"{where}: ExceptionType must list at least one of {', '.join(RETRY_EXCEPTION_TYPES)}")
    for kind in types:
        if kind not in RETRY_EXCEPTION_TYPES:
            raise ValidationError(
                f"{where}: unknown ExceptionType {kind!r}; supported: {', '.join(RETRY_EXCEPTION_TYPES)}")
    interval, backoff = raw.get("IntervalSeconds", 1), raw.get("BackoffRate", 2.0)
    max_attempts, expire = raw.get("MaxAttempts"), raw.get("ExpireAfterMin")
    if not _is_number(interval) or interval < 0:
        raise ValidationError(f"{where}: IntervalSeconds must be a number >= 0, got {interval!r}")
    if not _is_number(backoff) or backoff < 1:
        raise ValidationError(f"{where}: BackoffRate must be a number >= 1, got {backoff!r}")
    if max_attempts is None and expire is None:
        raise ValidationError(f"{where}: set MaxAttempts or ExpireAfterMin, or the policy never ends")
    if max_attempts is not None and (not _is_int(max_attempts) or max_attempts < 0):
        raise ValidationError(f"{where}: MaxAttempts must be a whole number >= 0, got {max_attempts!r}")
    if expire is not None and (not _is_number(expire) or expire < 0):
        raise ValidationError(f"{where}: ExpireAfterMin must be a number >= 0, got {expire!r}")
    return RetryPolicy(tuple(types), float(interval), float(backoff), max_attempts,
                       None if expire is None else float(expire))


def next_retry(settings: RetrySettings, granted: list[str | None], first_started: datetime,
               failure_kind: str, stopping: bool, now: datetime) -> tuple[str, datetime] | None:
    """The rule granting another attempt and when it is due, or None (rules 1-5 above).

    ``granted`` holds, for each earlier failed attempt of the step, the rule that granted
    its retry (``"RetryStrategy"``, ``"RetryPolicies[i]"``) or None.
    """
    if failure_kind != "Infrastructure" or stopping:
        return None
    if granted.count(STRATEGY) < settings.max_retry_attempts:
        return STRATEGY, now
    for index, policy in enumerate(settings.policies):
        label = f"RetryPolicies[{index}]"
        used = granted.count(label)
        if policy.max_attempts is not None and used >= policy.max_attempts:
            continue
        due = now + timedelta(seconds=policy.interval_seconds * policy.backoff_rate ** used)
        if policy.expire_after_minutes is not None and \
                due > first_started + timedelta(minutes=policy.expire_after_minutes):
            continue
        return label, due
    return None


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
