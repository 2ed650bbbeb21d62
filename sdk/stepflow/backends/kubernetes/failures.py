"""A step attempt's Job and pod → running, or ended and why: pure, from their status.

A pod that will never run (its image cannot be pulled, no node can hold it) is not left
pending for ever: past a bounded wait the attempt ends with a reason a person can act on,
and the launcher deletes its Job. Each reason is the first word of the step's
``FailureReason``, as the runtime's ``"ValueError: ..."`` is.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from stepflow.backends.kubernetes.jobspec import CONTAINER
from stepflow.backends.local.launcher import ProcessStatus
from stepflow.timefmt import parse as parse_time

IMAGE_PULL_FAILED = "ImagePullFailed"
OUT_OF_MEMORY = "OutOfMemory"
MAX_RUNTIME_EXCEEDED = "MaxRuntimeExceeded"
UNSCHEDULABLE = "Unschedulable"
EVICTED = "Evicted"
CONTAINER_CONFIG = "ContainerConfigError"
STAGING_FAILED = "StagingFailed"

RUNNING = ProcessStatus("running")
#: Waiting reasons that will not go away by waiting.
_NEVER_PULLS = ("ErrImageNeverPull", "InvalidImageName")
_PULL_ERRORS = ("ErrImagePull", "ImagePullBackOff")


@dataclass(frozen=True)
class Patience:
    """How long a pod may stay stuck before its attempt fails (the chart's ``steps.*After``)."""

    image_pull: float = 60.0
    unschedulable: float = 300.0
    container_config: float = 60.0


DEFAULT_PATIENCE = Patience()


def _conditions(obj: Mapping[str, Any] | None) -> dict[str, Mapping[str, Any]]:
    return {c.get("type"): c for c in ((obj or {}).get("status") or {}).get("conditions") or ()
            if c.get("status") == "True" or c.get("type") == "PodScheduled"}


def _container(pod: Mapping[str, Any] | None) -> Mapping[str, Any]:
    """The step's container status (the user's code; the pod's other containers are the runtime's)."""
    statuses = ((pod or {}).get("status") or {}).get("containerStatuses") or ()
    return next((c for c in statuses if c.get("name") == CONTAINER), statuses[0] if statuses else {})


def _init_container(pod: Mapping[str, Any] | None) -> Mapping[str, Any]:
    """The status of the init container that has not succeeded (staging, downloading inputs), or {}."""
    statuses = ((pod or {}).get("status") or {}).get("initContainerStatuses") or ()
    return next((c for c in statuses if ((c.get("state") or {}).get("terminated") or {}).get("exitCode") != 0), {})


def _age(obj: Mapping[str, Any], now: datetime) -> float:
    created = (obj.get("metadata") or {}).get("creationTimestamp")
    return (now - parse_time(created)).total_seconds() if created else 0.0


def _spec_container(pod: Mapping[str, Any] | None) -> Mapping[str, Any]:
    containers = ((pod or {}).get("spec") or {}).get("containers") or ()
    return containers[0] if containers else {}


def _limit(pod: Mapping[str, Any] | None) -> str:
    return str(((_spec_container(pod).get("resources") or {}).get("limits") or {}).get("memory") or "none")


def classify(job: Mapping[str, Any], pod: Mapping[str, Any] | None, now: datetime,
             patience: Patience = DEFAULT_PATIENCE) -> ProcessStatus:
    """The attempt as the orchestrator sees a process: running, or exited (with why)."""
    if (job.get("metadata") or {}).get("deletionTimestamp"):
        return RUNNING  # being stopped: over once it is gone
    job_conditions = _conditions(job)
    state = _container(pod).get("state") or {}
    terminated = state.get("terminated") or (_container(pod).get("lastState") or {}).get("terminated")
    failed = job_conditions.get("Failed") or job_conditions.get("FailureTarget")
    if failed is not None and failed.get("reason") == "DeadlineExceeded":
        deadline = (job.get("spec") or {}).get("activeDeadlineSeconds")
        return ProcessStatus("exited", None, f"{MAX_RUNTIME_EXCEEDED}: the step ran longer than its "
                             f"max_runtime_in_seconds ({deadline} s) and was stopped.", "User")
    pod_phase = ((pod or {}).get("status") or {}).get("phase")
    if terminated:
        code = terminated.get("exitCode")
        if pod_phase not in ("Succeeded", "Failed") and failed is None and "Complete" not in job_conditions:
            return RUNNING  # the pod's other containers are at work (a processing step's uploader)
        if terminated.get("reason") == "OOMKilled":
            return ProcessStatus("exited", code, f"{OUT_OF_MEMORY}: the step's container was killed for using "
                                 f"more than its memory limit ({_limit(pod)}); use a larger instance_type.", "User")
        return ProcessStatus("exited", code)
    if "Complete" in job_conditions or "SuccessCriteriaMet" in job_conditions:
        return ProcessStatus("exited", 0)
    init = _init_container(pod)
    init_ended = (init.get("state") or {}).get("terminated")
    if init_ended and ((pod or {}).get("status") or {}).get("phase") == "Failed":
        return ProcessStatus("exited", None, f"{STAGING_FAILED}: the step's runtime could not prepare the attempt "
                             f"(container {init.get('name')!r} exited with code {init_ended.get('exitCode')}); "
                             "the attempt's log says why.", "Infrastructure")
    pod_status = (pod or {}).get("status") or {}
    if pod_status.get("reason") == EVICTED:
        return ProcessStatus("exited", None, f"{EVICTED}: {pod_status.get('message') or 'the pod was evicted'}",
                             "Infrastructure")
    if failed is not None:
        return ProcessStatus("exited", None, f"{failed.get('reason') or 'JobFailed'}: "
                             f"{failed.get('message') or 'the Job failed'}", "Infrastructure")
    if pod is None:
        return RUNNING
    stuck = init if (init.get("state") or {}).get("waiting") else _container(pod)
    waiting = (stuck.get("state") or {}).get("waiting") or {}
    why, message = waiting.get("reason"), waiting.get("message") or ""
    image = stuck.get("image") or _spec_container(pod).get("image")
    if why in _NEVER_PULLS or (why in _PULL_ERRORS and _age(pod, now) > patience.image_pull):
        return ProcessStatus("exited", None, f"{IMAGE_PULL_FAILED}: image {image!r} could not be pulled ({why}"
                             f"{': ' + message if message else ''}).", "User")
    if why == "CreateContainerConfigError" and _age(pod, now) > patience.container_config:
        return ProcessStatus("exited", None, f"{CONTAINER_CONFIG}: {message}", "User")
    scheduled = _conditions(pod).get("PodScheduled")
    if (scheduled is not None and scheduled.get("status") == "False" and scheduled.get("reason") == "Unschedulable"
            and _age(pod, now) > patience.unschedulable):
        return ProcessStatus("exited", None, f"{UNSCHEDULABLE}: no node could run the step's pod for "
                             f"{patience.unschedulable:g} s: {scheduled.get('message')}", "Infrastructure")
    return RUNNING
