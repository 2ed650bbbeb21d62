"""The time formats stepflow writes, each spelled once.

Three precisions, because three readers fix them: Kubernetes' ``metav1.Time`` (seconds),
SageMaker's API responses and our records (milliseconds), and the engine's persisted state
(microseconds, so a reloaded state compares equal). All are RFC 3339 in UTC with a ``Z``;
``parse`` reads any of them; ``parse_duration`` reads the Go durations our resources and
settings take. Standard library (and ``errors``) only: every layer may import it.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from stepflow.errors import ConfigurationError

_DURATION = re.compile(r"^(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m(?!s))?(?:(\d+(?:\.\d+)?)s)?(?:(\d+)ms)?$")


def utcnow() -> datetime:
    return datetime.now(UTC)


def require_utc(moment: datetime) -> datetime:
    """Times without a zone are ambiguous across the processes that share a record."""
    if not isinstance(moment, datetime) or moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"expected a timezone-aware datetime, got {moment!r}")
    return moment.astimezone(UTC)


def seconds(moment: datetime | None = None) -> str:
    """``2026-11-25T01:02:03Z``: what ``metav1.Time`` serialises to (Kubernetes status, Events)."""
    return require_utc(moment or utcnow()).strftime("%Y-%m-%dT%H:%M:%SZ")


def millis(moment: datetime | None = None) -> str:
    """``2026-11-25T01:02:03.456Z``: SageMaker's API times, attempt records, summaries."""
    utc = require_utc(moment or utcnow())
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def micros(moment: datetime) -> str:
    """``2026-11-25T01:02:03.456789Z``: the engine's state, which must round-trip exactly."""
    return require_utc(moment).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def parse(text: str) -> datetime:
    """Any RFC 3339 UTC time above (``Z`` or ``+00:00``); ``ValueError`` otherwise."""
    if not isinstance(text, str) or not (text.endswith("Z") or text.endswith("+00:00")):
        raise ValueError(f"expected an RFC 3339 UTC time ending in Z, got {text!r}")
    return require_utc(datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text))


def parse_or_none(text: str | None) -> datetime | None:
    """``parse`` for optional, possibly hand-edited fields: None when absent or unreadable."""
    if not text:
        return None
    try:
        return parse(text)
    except ValueError:
        return None


def parse_duration(text: str | None, what: str, default: float) -> float:
    """``30s``, ``1m``, ``1h30m``, ``500ms`` (Go's time.Duration subset) → seconds."""
    if text in (None, ""):
        return default
    match = _DURATION.match(str(text).strip())
    if not match or not any(match.groups()):
        raise ConfigurationError(
            f"{what} is {text!r}, not a duration; write it like 30s, 5m or 1h30m.",
            reason="InvalidDuration")
    h, m, s, ms = (float(g) if g else 0.0 for g in match.groups())
    seconds = h * 3600 + m * 60 + s + ms / 1000
    if seconds <= 0:
        raise ConfigurationError(f"{what} must be longer than zero (got {text!r}).",
                                 reason="InvalidDuration")
    return seconds
