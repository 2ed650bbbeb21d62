"""What ``stepflow up`` remembers about each Pipeline manifest, between passes and runs.

The operator has the API server to keep a resource's status; ``stepflow up`` keeps the same
status document in the store (:func:`stepflow.layout.up_state_key`), so a restart neither
rebuilds nor re-runs what is current, and a second machine on the same store sees it too.
"""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from stepflow import layout, timefmt
from stepflow.storage import NotFound, ObjectStore

log = logging.getLogger(__name__)

#: Keys of ``.status`` the executions own; the reconciler's Outcome owns every other one
#: (``summary.steps`` too belongs to the executions).
EXECUTION_KEYS = ("lastExecution", "steps")


@dataclass
class PipelineState:
    """One manifest's status, generation and recent executions."""

    name: str
    created_at: str = field(default_factory=timefmt.seconds)
    generation: int = 0
    spec_digest: str | None = None
    status: dict[str, Any] = field(default_factory=dict)
    #: The latest executions, newest first, at most ``spec.historyLimit``.
    history: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> bytes:
        return json.dumps({"name": self.name, "createdAt": self.created_at, "generation": self.generation,
                           "specDigest": self.spec_digest, "status": self.status,
                           "history": self.history}, indent=1, sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> PipelineState:
        raw = json.loads(data)
        return cls(name=raw["name"], created_at=raw.get("createdAt") or timefmt.seconds(),
                   generation=int(raw.get("generation") or 0), spec_digest=raw.get("specDigest"),
                   status=dict(raw.get("status") or {}), history=list(raw.get("history") or []))


class StateStore:
    """One small document per manifest, at ``<store>/.stepflow-up/<name>.json``."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store

    def load(self, name: str) -> PipelineState:
        key = layout.up_state_key(name)
        try:
            return PipelineState.from_json(self.store.get_bytes(key))
        except NotFound:
            return PipelineState(name=name)
        except (ValueError, KeyError) as exc:
            log.warning("%s is unreadable (%s); starting %s afresh", self.store.uri(key), exc, name)
            return PipelineState(name=name)

    def save(self, state: PipelineState) -> None:
        self.store.put_bytes(layout.up_state_key(state.name), state.to_json())


def merge_status(reconciled: Mapping[str, Any], current: Mapping[str, Any]) -> dict[str, Any]:
    """The reconciler's status with the executions' keys carried over from ``current``.

    What a merge patch does on the resource for the operator, done on a dict.
    """
    status = copy.deepcopy(dict(reconciled))
    for key in EXECUTION_KEYS:
        if key in current:
            status[key] = copy.deepcopy(current[key])
        else:
            status.pop(key, None)
    summary = dict(status.get("summary") or {})
    steps = (current.get("summary") or {}).get("steps")
    if steps is not None:
        summary["steps"] = steps
    if summary:
        status["summary"] = summary
    return status


def apply_execution(state: PipelineState, execution_id: str, owned: Mapping[str, Any]) -> None:
    """Record an execution's news (:func:`stepflow.gitops.execution_status.pipeline_status`).

    Its history entry is updated; the status keys change only while it is the latest
    execution. Absent values are dropped, as a merge patch drops them on the resource.
    """
    last = {k: v for k, v in owned["lastExecution"].items() if v is not None}
    record = next((h for h in state.history if h.get("name") == execution_id), None)
    if record is not None:
        record.update(last)
    if (state.status.get("lastExecution") or {}).get("name") == execution_id:
        state.status["lastExecution"] = last
        state.status["steps"] = copy.deepcopy(owned["steps"])
        state.status.setdefault("summary", {})["steps"] = owned["summary"]["steps"]
