"""The rows of ``stepflow up``'s table: ``kubectl get pipelines``' columns, from a status."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from stepflow import timefmt
from stepflow.engine import FAILED
from stepflow.gitops.conditions import READY, get_condition


@dataclass(frozen=True)
class Row:
    """One line of the table."""

    name: str
    revision: str
    ready: str
    phase: str
    steps: str
    last_run: datetime | None
    created: datetime | None
    message: str


def row(name: str, status: Mapping[str, Any], *, created_at: str | None, problem: str | None,
        suspended: bool) -> Row:
    """The row of one manifest; ``problem`` is an execution that could not start."""
    ready = get_condition(status.get("conditions"), READY) or {}
    last = status.get("lastExecution") or {}
    summary = status.get("summary") or {}
    message = problem or ""
    if not message and ready.get("status") != "True" and ready.get("message"):
        message = f"{ready.get('reason')}: {ready['message']}"
    if not message and last.get("phase") == FAILED:
        failed = [s for s in status.get("steps") or [] if s.get("phase") == FAILED]
        if failed:
            message = f"step {failed[0]['name']}: {failed[0].get('failureReason', 'failed')}"
    if ready.get("status") == "False" and last.get("phase"):
        # The phase is the latest execution's, of an older revision than the one that failed
        # to build: say so, or "READY False, PHASE Succeeded" reads as a contradiction.
        of = f" of {_short(last.get('revision'))}" if last.get("revision") else ""
        message += f" (PHASE is the last execution's{of})"
    if suspended:
        message = message or "suspended"
    return Row(name=name, revision=summary.get("revision") or "",
               ready=ready.get("status") or ("Unknown" if status else ""),
               phase=last.get("phase") or "", steps=summary.get("steps") or "",
               last_run=timefmt.parse_or_none(last.get("startedAt")),
               created=timefmt.parse_or_none(created_at), message=message)


def problem_row(name: str, message: str) -> Row:
    """A manifest that could not be read."""
    return Row(name=name, revision="", ready="False", phase="", steps="", last_run=None, created=None,
               message=message)


def _short(revision: str | None) -> str:
    """``main@sha1:4f1c2ab...`` or a bare sha, cut to what a person compares by eye."""
    text = revision or ""
    head, sep, sha = text.rpartition(":")
    return f"{head}{sep}{sha[:7]}" if sep else text[:12]
