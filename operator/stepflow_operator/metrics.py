"""Every Prometheus series the operator exports: names, labels and buckets live here only.

``/metrics`` is served on its own port (``STEPFLOW_METRICS_ADDRESS``, default
``0.0.0.0:8081``) by :mod:`.monitoring`, beside the default process and Python
collectors. docs/OPERATIONS.md lists every series; a test scrapes a running operator.

Label values are bounded: results, stages, phases and outcomes are fixed vocabularies;
only ``stepflow_pipeline_condition`` carries a Pipeline's namespace and name (as Flux's
``gotk_reconcile_condition`` does), and a Pipeline's series go away with it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

from stepflow.compiler.publish import PublishReport
from stepflow.engine import ExecutionState
from stepflow.engine.state import FAILED, STOPPED, SUCCEEDED
from stepflow.gitops.observer import ReconcileObserver, Stage

_SHORT = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)
_LONG = (1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 21600.0, 86400.0)

RECONCILE_DURATION = Histogram(
    "stepflow_reconcile_duration_seconds",
    "One reconcile of a Pipeline, by result: ready, not_ready, stalled, error (the operator's own failure).",
    ["result"], buckets=_SHORT)
STAGE_DURATION = Histogram(
    "stepflow_reconcile_stage_duration_seconds",
    "One stage of a reconcile (resolve = ls-remote, fetch, build, publish), by result: ok or failed.",
    ["stage", "result"], buckets=_SHORT)
BUILDS_IN_FLIGHT = Gauge("stepflow_builds_in_flight", "Sandbox builds running now.")
PUBLISHED_OBJECTS = Counter("stepflow_published_objects", "Artifact files uploaded to the store.")
PUBLISHED_BYTES = Counter("stepflow_published_bytes", "Bytes of artifact files uploaded to the store.")
SKIPPED_OBJECTS = Counter("stepflow_publish_skipped_objects",
                          "Artifact files not uploaded because the store already had them unchanged.")
SKIPPED_BYTES = Counter("stepflow_publish_skipped_bytes",
                        "Bytes not uploaded because the store already had them unchanged.")
EXECUTIONS = Gauge("stepflow_executions", "Executions this operator drives now, by phase.", ["phase"])
EXECUTIONS_FINISHED = Counter("stepflow_executions_finished",
                              "Executions that ended while this operator drove them, by phase.", ["phase"])
STEP_DURATION = Histogram(
    "stepflow_step_duration_seconds",
    "One step from start to end, by backend and outcome (Succeeded, Failed, Stopped).",
    ["backend", "outcome"], buckets=_LONG)
WEBHOOK_REQUESTS = Counter(
    "stepflow_webhook_requests",
    "Receiver requests by receiver (namespace/name, empty when the path matched none) and result.",
    ["receiver", "result"])
PIPELINE_CONDITION = Gauge(
    "stepflow_pipeline_condition",
    "1 for each Pipeline's current Ready, Reconciling and Stalled condition, with its status and reason.",
    ["namespace", "name", "type", "status", "reason"])

#: The kstatus summary conditions exported per Pipeline.
SUMMARY_CONDITIONS = ("Ready", "Reconciling", "Stalled")
#: Step phases that end a step, as the engine names them.
_STEP_ENDS = frozenset({SUCCEEDED, FAILED, STOPPED})


class ReconcileMetrics(ReconcileObserver):
    """The reconciler's hooks, as series."""

    def stage_started(self, stage: Stage) -> None:
        if stage == "build":
            BUILDS_IN_FLIGHT.inc()

    def stage_finished(self, stage: Stage, seconds: float, ok: bool) -> None:
        if stage == "build":
            BUILDS_IN_FLIGHT.dec()
        STAGE_DURATION.labels(stage, "ok" if ok else "failed").observe(seconds)

    def published(self, report: PublishReport) -> None:
        PUBLISHED_OBJECTS.inc(report.uploaded_files)
        PUBLISHED_BYTES.inc(report.uploaded_bytes)
        SKIPPED_OBJECTS.inc(report.skipped_files)
        SKIPPED_BYTES.inc(report.skipped_bytes)


def reconcile_result(conditions: Iterable[Mapping[str, Any]] | None) -> str:
    """``ready``, ``stalled`` or ``not_ready``, from the conditions a reconcile left."""
    by_type = {c.get("type"): c.get("status") for c in conditions or ()}
    if by_type.get("Ready") == "True":
        return "ready"
    return "stalled" if by_type.get("Stalled") == "True" else "not_ready"


def webhook_request(receiver: str, result: str) -> None:
    WEBHOOK_REQUESTS.labels(receiver, result).inc()


def reconciled(seconds: float, result: str) -> None:
    RECONCILE_DURATION.labels(result).observe(seconds)


class PipelineConditions:
    """``stepflow_pipeline_condition``: one series per Pipeline and summary condition."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._current: dict[tuple[str, str], list[tuple[str, str, str, str, str]]] = {}

    def set(self, namespace: str, name: str, conditions: Iterable[Mapping[str, Any]] | None) -> None:
        labels = [(namespace, name, str(c["type"]), str(c.get("status") or "Unknown"), str(c.get("reason") or ""))
                  for c in conditions or () if c.get("type") in SUMMARY_CONDITIONS]
        with self._lock:
            for old in self._current.get((namespace, name), []):
                if old not in labels:
                    PIPELINE_CONDITION.remove(*old)
            for new in labels:
                PIPELINE_CONDITION.labels(*new).set(1)
            self._current[(namespace, name)] = labels

    def forget(self, namespace: str, name: str) -> None:
        with self._lock:
            for old in self._current.pop((namespace, name), []):
                PIPELINE_CONDITION.remove(*old)


class ExecutionMetrics:
    """One driven execution's phase and its steps' durations.

    Steps that had ended before this operator began driving the execution (a resumed one)
    are not observed again, so a restart does not count a step twice.
    """

    def __init__(self, backend: str) -> None:
        self.backend = backend
        self.phase: str | None = None
        self._seen: set[str] | None = None

    def update(self, phase: str, state: ExecutionState) -> None:
        self._phase(phase)
        ended = {s.name: s for s in state.steps.values() if s.status in _STEP_ENDS}
        if self._seen is None:
            self._seen = set(ended)
            return
        for name, step in ended.items():
            if name in self._seen:
                continue
            self._seen.add(name)
            if step.started_at is not None and step.ended_at is not None:
                STEP_DURATION.labels(self.backend, step.status).observe(
                    (step.ended_at - step.started_at).total_seconds())

    def finished(self, phase: str) -> None:
        self._phase(None)
        EXECUTIONS_FINISHED.labels(phase).inc()

    def close(self) -> None:
        """The daemon stops driving it (ended, deleted or left to another operator)."""
        self._phase(None)

    def _phase(self, phase: str | None) -> None:
        if phase == self.phase:
            return
        if self.phase is not None:
            EXECUTIONS.labels(self.phase).dec()
        if phase is not None:
            EXECUTIONS.labels(phase).inc()
        self.phase = phase
