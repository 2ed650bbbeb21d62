"""kstatus conditions for our resources, as pure functions over ``status.conditions``.

We follow the kstatus conventions (the ones Flux uses) so ``kubectl wait
--for=condition=Ready``, Flux health checks and Argo CD read our resources without knowing
them: ``Ready`` is the summary (positive polarity, always present once reconciled);
``Reconciling`` and ``Stalled`` are abnormal-true (negative polarity) and are present only
while True. ``lastTransitionTime`` moves only when a condition's status flips, so watchers
can tell "still failing" from "failed again".

Every function takes the current list and returns a new one; the caller writes it with
kopf's ``patch.status["conditions"] = ...``. Nothing here talks to the API server.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from stepflow.errors import USER
from stepflow.timefmt import seconds

Condition = dict[str, Any]

READY = "Ready"
RECONCILING = "Reconciling"
STALLED = "Stalled"

#: Condition types that are only present while True (kstatus "abnormal-true").
NEGATIVE_POLARITY = frozenset({RECONCILING, STALLED})

#: Reasons kstatus tools and Flux users already know.
PROGRESSING = "Progressing"
PROGRESSING_WITH_RETRY = "ProgressingWithRetry"
SUCCEEDED = "Succeeded"

_STATUSES = frozenset({"True", "False", "Unknown"})


def now() -> str:
    """RFC 3339 UTC timestamp at second precision, the format metav1.Time serialises to."""
    return seconds()


def get_condition(conditions: Sequence[Condition] | None, type_: str) -> Condition | None:
    """The condition of this type, or None."""
    for condition in conditions or ():
        if condition.get("type") == type_:
            return condition
    return None


def is_true(conditions: Sequence[Condition] | None, type_: str) -> bool:
    condition = get_condition(conditions, type_)
    return condition is not None and condition.get("status") == "True"


def set_condition(conditions: Sequence[Condition] | None, type_: str, status: str, *,
                  reason: str, message: str, observed_generation: int | None,
                  timestamp: str | None = None) -> list[Condition]:
    """Return ``conditions`` with ``type_`` set; negative-polarity types set False are removed.

    ``lastTransitionTime`` is kept when the status does not change, even if the reason or
    message does.
    """
    if status not in _STATUSES:
        raise ValueError(f"condition status must be one of {sorted(_STATUSES)}, not {status!r}")
    if not reason or not reason[0].isalpha():
        raise ValueError(f"condition reason must be a CamelCase word, not {reason!r}")
    if type_ in NEGATIVE_POLARITY and status == "False":
        return remove_condition(conditions, type_)
    previous = get_condition(conditions, type_)
    transition = (previous["lastTransitionTime"]
                  if previous is not None and previous.get("status") == status
                  and previous.get("lastTransitionTime")
                  else timestamp or now())
    updated: Condition = {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": transition,
    }
    if observed_generation is not None:
        updated["observedGeneration"] = observed_generation
    result = [c for c in conditions or () if c.get("type") != type_]
    result.append(updated)
    return _ordered(result)


def remove_condition(conditions: Sequence[Condition] | None, type_: str) -> list[Condition]:
    return [dict(c) for c in conditions or () if c.get("type") != type_]


def mark_reconciling(conditions: Sequence[Condition] | None, *, observed_generation: int | None,
                     message: str, reason: str = PROGRESSING,
                     timestamp: str | None = None) -> list[Condition]:
    """Work is under way: Reconciling=True, Ready=Unknown (unless it is already False), no Stalled.

    A Ready=False from a previous failure stays False with its reason until the new attempt
    ends, so a retry loop does not hide the error that caused it.
    """
    result = set_condition(conditions, RECONCILING, "True", reason=reason, message=message,
                           observed_generation=observed_generation, timestamp=timestamp)
    result = remove_condition(result, STALLED)
    ready = get_condition(result, READY)
    if ready is None or ready.get("status") == "True":
        result = set_condition(result, READY, "Unknown", reason=reason, message=message,
                               observed_generation=observed_generation, timestamp=timestamp)
    return result


def mark_ready(conditions: Sequence[Condition] | None, *, observed_generation: int | None,
               message: str, reason: str = SUCCEEDED,
               timestamp: str | None = None) -> list[Condition]:
    """The desired state is reached: Ready=True; Reconciling and Stalled removed."""
    result = remove_condition(remove_condition(conditions, RECONCILING), STALLED)
    return set_condition(result, READY, "True", reason=reason, message=message,
                         observed_generation=observed_generation, timestamp=timestamp)


def mark_failed(conditions: Sequence[Condition] | None, *, observed_generation: int | None,
                reason: str, message: str, timestamp: str | None = None) -> list[Condition]:
    """A retryable failure: Ready=False with the failure's reason; Reconciling=True (with retry).

    The operator will try again on its interval, as Flux does with ``ProgressingWithRetry``.
    """
    result = remove_condition(conditions, STALLED)
    result = set_condition(result, RECONCILING, "True", reason=PROGRESSING_WITH_RETRY,
                           message=message, observed_generation=observed_generation,
                           timestamp=timestamp)
    return set_condition(result, READY, "False", reason=reason, message=message,
                         observed_generation=observed_generation, timestamp=timestamp)


def mark_stalled(conditions: Sequence[Condition] | None, *, observed_generation: int | None,
                 reason: str, message: str, timestamp: str | None = None) -> list[Condition]:
    """A failure only a human can fix (a spec or commit change): Stalled=True, Ready=False.

    Reconciling is removed: nothing will happen until the input changes.
    """
    result = remove_condition(conditions, RECONCILING)
    result = set_condition(result, STALLED, "True", reason=reason, message=message,
                           observed_generation=observed_generation, timestamp=timestamp)
    return set_condition(result, READY, "False", reason=reason, message=message,
                         observed_generation=observed_generation, timestamp=timestamp)


def mark_failure(conditions: Sequence[Condition] | None, *, kind: str, observed_generation: int | None,
                 reason: str, message: str, timestamp: str | None = None) -> list[Condition]:
    """A failure of the given kind (:mod:`stepflow.errors`): a user error stalls, anything
    else is retried. The one place where an error's kind becomes kstatus conditions."""
    marker = mark_stalled if kind == USER else mark_failed
    return marker(conditions, observed_generation=observed_generation, reason=reason, message=message,
                  timestamp=timestamp)


def _ordered(conditions: list[Condition]) -> list[Condition]:
    """Ready first, then the other kstatus types, then the rest in their order: stable diffs."""
    rank = {READY: 0, RECONCILING: 1, STALLED: 2}
    return sorted(conditions, key=lambda c: rank.get(c.get("type", ""), 3))
