"""The orchestrator's launcher when attempts are Jobs: create, observe, stop, forget.

One watch on the execution's Jobs and one on its pods (by the ``stepflow.dev/execution``
label) keep a local copy of both, so the orchestrator's ticks read memory, not the API
server, and ``wait`` returns as soon as something changes instead of sleeping a poll
interval. Creation is idempotent (deterministic names, 409 means "already there"), so an
orchestrator that replaces a dead one finds the Jobs it launched, adopts them, and never
runs a step twice.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from stepflow.backends.kubernetes.failures import DEFAULT_PATIENCE, Patience, classify
from stepflow.backends.kubernetes.jobspec import EXECUTION_LABEL, job_name, labels
from stepflow.backends.local.launcher import ProcessStatus
from stepflow.errors import BackendError
from stepflow.timefmt import utcnow

log = logging.getLogger(__name__)

#: Builds one attempt's Job: (step, attempt, resolved container arguments) → manifest.
JobFactory = Callable[[str, int, Sequence[str], Mapping[str, str] | None], dict[str, Any]]
_WATCH_SECONDS = 50


class _Mirror:
    """A list+watch copy of one kind of object, kept fresh by a daemon thread."""

    def __init__(self, kind: str, list_call: Callable[..., Any], namespace: str, selector: str,
                 api: client.ApiClient, changed: threading.Event) -> None:
        self.kind, self._list, self.namespace, self.selector = kind, list_call, namespace, selector
        self._api, self._changed = api, changed
        self.objects: dict[str, dict[str, Any]] = {}
        self.synced = threading.Event()
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._main, name=f"watch-{kind}-{selector}", daemon=True)
        self._thread.start()

    def get(self, name: str) -> dict[str, Any] | None:
        with self._lock:
            return self.objects.get(name)

    def put(self, obj: dict[str, Any]) -> None:
        with self._lock:
            self.objects[obj["metadata"]["name"]] = obj

    def values(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.objects.values())

    def close(self) -> None:
        self._closed.set()

    def _main(self) -> None:
        backoff = 0.2
        while not self._closed.is_set():
            try:
                listed = self._list(self.namespace, label_selector=self.selector, _preload_content=False)
                body = _json(listed)
                with self._lock:
                    self.objects = {o["metadata"]["name"]: o for o in body.get("items") or ()}
                version = body["metadata"]["resourceVersion"]
                self.synced.set()
                self._changed.set()
                stream = watch.Watch()
                for event in stream.stream(self._list, self.namespace, label_selector=self.selector,
                                           resource_version=version, timeout_seconds=_WATCH_SECONDS,
                                           allow_watch_bookmarks=True):
                    if self._closed.is_set():
                        stream.stop()
                        break
                    kind, obj = event["type"], event["raw_object"]
                    if kind == "ERROR":
                        break  # expired resource version: list again
                    if kind == "BOOKMARK":
                        continue
                    with self._lock:
                        if kind == "DELETED":
                            self.objects.pop(obj["metadata"]["name"], None)
                        else:
                            self.objects[obj["metadata"]["name"]] = obj
                    self._changed.set()
                backoff = 0.2
            except Exception as exc:  # noqa: BLE001 - the API server restarting, a dropped connection: list again
                if self._closed.is_set():
                    return
                log.warning("watch of %s (%s) failed, listing again in %.1f s: %s", self.kind, self.selector,
                            backoff, exc)
                self._closed.wait(backoff)
                backoff = min(10.0, backoff * 2)


class JobLauncher:
    """The :class:`~stepflow.backends.orchestrator.Launcher` of one execution on one namespace."""

    #: What the orchestrator may launch here: @step functions and processing containers.
    step_types = ("Training", "Processing")

    def __init__(self, api: client.ApiClient, namespace: str, pipeline: str, execution_id: str,
                 make_job: JobFactory, patience: Patience = DEFAULT_PATIENCE) -> None:
        self.api, self.namespace, self.execution_id = api, namespace, execution_id
        self.batch, self.core = client.BatchV1Api(api), client.CoreV1Api(api)
        self.make_job = make_job
        self.patience = patience
        self._changed = threading.Event()
        selector = f"{EXECUTION_LABEL}={labels(pipeline, execution_id)[EXECUTION_LABEL]}"
        self.jobs = _Mirror("jobs", self.batch.list_namespaced_job, namespace, selector, api, self._changed)
        self.pods = _Mirror("pods", self.core.list_namespaced_pod, namespace, selector, api, self._changed)
        #: Jobs this launcher ended itself (stuck pods): deleted when their attempt is forgotten.
        self._doomed: set[str] = set()
        #: Jobs the API server refused (an invalid podTemplate patch, a missing namespace): why.
        self._rejected: dict[str, ProcessStatus] = {}

    # -- the Launcher protocol -------------------------------------------------------------

    def launch(self, execution_id: str, step: str, attempt: int, arguments: Sequence[str],
               environment: Mapping[str, str] | None = None) -> int:
        manifest = self.make_job(step, attempt, arguments, environment)
        try:
            created = self.batch.create_namespaced_job(self.namespace, cast(Any, manifest), _preload_content=False)
            self.jobs.put(_json(created))
        except ApiException as exc:
            if exc.status == 409:  # created before (by us, or the orchestrator we replace)
                return 0
            why = (f"JobRejected: the API server refused Job {manifest['metadata']['name']} in namespace "
                   f"{self.namespace}: {exc.status} {exc.reason}: {_message(exc)}")
            if exc.status in (400, 403, 404, 422):  # the manifest or the namespace: the attempt fails, visibly
                self._rejected[manifest["metadata"]["name"]] = ProcessStatus("exited", None, why, "User")
                return 0
            raise BackendError(why, reason="JobCreateFailed") from None
        return 0

    def status(self, execution_id: str, step: str, attempt: int) -> ProcessStatus | None:
        name = job_name(execution_id, step, attempt)
        if name in self._rejected:
            return self._rejected[name]
        job = self.jobs.get(name)
        if job is None:
            job = self._read(name)
            if job is None:
                return None
        verdict = classify(job, self._pod_of(name), utcnow(), self.patience)
        if verdict.state != "running" and verdict.reason is not None and not _finished(job):
            self._doomed.add(name)
        return verdict

    def stop(self, execution_id: str, step: str, attempt: int, grace: float = 10.0) -> None:
        self._delete(job_name(execution_id, step, attempt))

    def forget(self, execution_id: str, step: str, attempt: int) -> None:
        name = job_name(execution_id, step, attempt)
        self._rejected.pop(name, None)
        if name in self._doomed:
            self._doomed.discard(name)
            self._delete(name)

    def wait(self, timeout: float) -> None:
        """Sleep until a Job or pod of this execution changes, at most ``timeout`` seconds."""
        if timeout > 0:
            self._changed.wait(timeout)
        self._changed.clear()

    def close(self) -> None:
        self.jobs.close()
        self.pods.close()

    # -- logs ------------------------------------------------------------------------------

    def log(self, execution_id: str, step: str, attempt: int) -> bytes | None:
        """The attempt's pod output, every container's in the order they ran, each under a
        ``==> name <==`` line (the runtime's staging, the user's code, the collector); None
        when there is no pod (any more)."""
        pod = self._pod_of(job_name(execution_id, step, attempt))
        if pod is None:
            return None
        name, spec = pod["metadata"]["name"], pod.get("spec") or {}
        parts = []
        for container in [*(spec.get("initContainers") or ()), *(spec.get("containers") or ())]:
            try:
                response = self.core.read_namespaced_pod_log(name, self.namespace, container=container["name"],
                                                             _preload_content=False)
            except ApiException as exc:  # a container that never started has no log
                log.debug("no log for container %s of pod %s: %s %s", container["name"], name, exc.status,
                          exc.reason)
                continue
            parts.append(f"==> {container['name']} <==\n".encode() + bytes(cast(Any, response).data))
        if not parts:
            log.warning("no log for pod %s", name)
            return None
        return b"".join(part if part.endswith(b"\n") else part + b"\n" for part in parts)

    # -- helpers ---------------------------------------------------------------------------

    def _pod_of(self, job: str) -> dict[str, Any] | None:
        pods = [p for p in self.pods.values() if (p["metadata"].get("labels") or {}).get("job-name") == job]
        if not pods:
            return None
        return max(pods, key=lambda p: str(p["metadata"].get("creationTimestamp") or ""))

    def _read(self, name: str) -> dict[str, Any] | None:
        try:
            return _json(self.batch.read_namespaced_job(name, self.namespace, _preload_content=False))
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise BackendError(f"Cannot read Job {name} in namespace {self.namespace}: {exc.status} {exc.reason}",
                               reason="JobReadFailed") from None

    def _delete(self, name: str) -> None:
        try:
            # Foreground: the Job stays (deleting) until its pods are gone, so "stopped" means stopped.
            self.batch.delete_namespaced_job(name, self.namespace, propagation_policy="Foreground")
        except ApiException as exc:
            if exc.status != 404:
                raise BackendError(f"Cannot delete Job {name} in namespace {self.namespace}: {exc.status} "
                                   f"{exc.reason}", reason="JobDeleteFailed") from None


def _json(response: Any) -> dict[str, Any]:
    """The body of a call made with ``_preload_content=False`` (plain JSON, no model objects)."""
    return cast(dict[str, Any], json.loads(response.data))


def _finished(job: Mapping[str, Any]) -> bool:
    return any(c.get("type") in ("Complete", "Failed") and c.get("status") == "True"
               for c in (job.get("status") or {}).get("conditions") or ())


def _message(exc: ApiException) -> str:
    try:
        return str(json.loads(exc.body or "{}").get("message") or "")
    except ValueError:
        return str(exc.body or "")
