"""One reconcile of a ``Pipeline``: source → build → publish → upsert → trigger.

Level-based and idempotent: it reads the resource's spec and last status, does only the
work the difference calls for, and returns the new status, the events to post and the
execution to start, if any. Each sub-step owns one condition (``SourceReady``,
``BuildSucceeded``, ``Published``) and ``Ready`` sums them up in kstatus terms, so
``kubectl wait --for=condition=Ready``, Flux and Argo CD read it without knowing us.

An unchanged commit costs one ``ls-remote``. A commit whose build produces the same
definition uploads nothing and starts nothing. A failed build leaves the last good
definition in place and says why (the user's file and line when there is one).
Blocking work (git, the sandbox's process waits, S3) runs off the event loop.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import shutil
import tempfile
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from stepflow import timefmt
from stepflow.compiler.bundle import Bundle
from stepflow.compiler.publish import publish, read_index
from stepflow.errors import INFRASTRUCTURE, USER, StepflowError
from stepflow.gitops import conditions as cond
from stepflow.gitops import reasons
from stepflow.gitops.gitauth import GitCredentials
from stepflow.gitops.observer import ReconcileObserver
from stepflow.gitops.pending import PendingPublish, PendingPublishes, backoff, build_inputs
from stepflow.gitops.reasons import BUILD_SUCCEEDED, PUBLISHED, SOURCE_READY
from stepflow.gitops.sandbox import BuildRequest, Limits, Sandbox, SandboxSettings
from stepflow.gitops.source import GitSource, SourceError, safe_url
from stepflow.gitops.spec import PipelineSpec
from stepflow.gitops.targets import Targets
from stepflow.k8s_names import object_name
from stepflow.storage import ObjectStore

log = logging.getLogger(__name__)

#: The longest wait before retrying a failure the next pass may not see again (the
#: interval is used when it is shorter).
MAX_RETRY_INTERVAL = 30.0

#: Called with a copy of the status while a reconcile is under way, so a front end can
#: show ``Reconciling`` before a long fetch, build or publish ends (kstatus's in-progress).
Progress = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass(frozen=True)
class Event:
    type: str  # "Normal" | "Warning"
    reason: str
    message: str


@dataclass(frozen=True)
class ExecutionRequest:
    name: str
    revision: str
    definition_digest: str
    pipeline_name: str
    parameters: Mapping[str, Any]
    trigger: str  # "NewRevision" | "Schedule"


@dataclass
class Outcome:
    status: dict[str, Any]
    events: list[Event] = field(default_factory=list)
    execution: ExecutionRequest | None = None
    requeue_after: float | None = None


def _short(commit: str | None) -> str:
    return (commit or "")[:7]


def _resource(name: str, namespace: str | None) -> str:
    """The key of a resource's kept build."""
    return f"Pipeline {namespace}/{name}" if namespace else f"Pipeline {name}"


async def _report(progress: Progress | None, out: Outcome) -> None:
    if progress is not None:
        await progress(json.loads(json.dumps(out.status)))


class Reconciler:
    """Holds what reconciles share: the git cache, the sandbox, the key, the targets.

    ``targets`` says where each Pipeline's store and backend are; without it, one is made
    from ``default_s3_root_uri``/``s3_endpoint_url`` with the local backend. ``observer``
    hears each stage's duration and each publish (the operator's metrics).
    """

    def __init__(self, *, work_dir: Path, integrity_key: bytes | None = None,
                 default_s3_root_uri: str | None = None, s3_endpoint_url: str | None = None,
                 targets: Targets | None = None, sandbox_settings: SandboxSettings | None = None,
                 observer: ReconcileObserver | None = None) -> None:
        self.work_dir = Path(work_dir)
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.source = GitSource(self.work_dir / "git")
        self.sandbox = Sandbox(sandbox_settings or SandboxSettings(work_dir=self.work_dir / "sandbox"))
        self.integrity_key = integrity_key
        self.pending = PendingPublishes(self.work_dir / "pending")
        self.targets = targets or Targets(default_s3_root_uri=default_s3_root_uri, s3_endpoint_url=s3_endpoint_url)
        self.observer = observer or ReconcileObserver()

    # -- the reconcile -------------------------------------------------------------------

    async def reconcile(self, name: str, spec: Mapping[str, Any] | PipelineSpec, status: Mapping[str, Any], *,
                        generation: int = 1, credentials: GitCredentials | StepflowError | None = None,
                        requested_at: str | None = None, now: datetime | None = None,
                        base_dir: str | None = None, namespace: str | None = None,
                        progress: Progress | None = None) -> Outcome:
        """One pass over the resource ``namespace/name`` (``stepflow up``: no namespace).

        ``progress`` is awaited with the status as it stands before each long sub-step
        (fetch and build, publish), with ``Reconciling=True`` saying which.
        """
        now = now or datetime.now(UTC)
        own: dict[str, Any] = json.loads(json.dumps(dict(status or {})))  # a private copy to edit
        out = Outcome(status=own)
        try:
            parsed = spec if isinstance(spec, PipelineSpec) else PipelineSpec.from_manifest(
                spec, name=name, namespace=namespace, base_dir=base_dir)
        except StepflowError as exc:
            return self._stalled(out, generation, exc.reason, str(exc), now)
        if parsed.suspend:
            out.requeue_after = None
            return out
        forced = requested_at is not None and requested_at != own.get("lastHandledReconcileAt")
        if requested_at is not None:
            own["lastHandledReconcileAt"] = requested_at
        out.requeue_after = parsed.interval

        commit = await self._source(out, parsed, credentials, generation, now)
        if commit is not None:
            revision = parsed.ref.revision(commit)
            current = (own.get("definition") or {}).get("revision") == revision
            last_build = own.get("lastBuild") or {}
            # A user error stays until the input changes; anything else is tried again.
            failed_for_good = last_build.get("revision") == revision and last_build.get("kind") == USER
            if forced or own.get("observedGeneration") != generation or not (current or failed_for_good):
                git_credentials = credentials if isinstance(credentials, GitCredentials) else None
                await self._build_publish_upsert(out, parsed, commit, git_credentials, generation, now,
                                                 resource=_resource(name, namespace),
                                                 forced=forced, progress=progress)
            elif current:
                self._ready(out, parsed, generation, now)
            self._schedule(out, parsed, now)
        own["observedGeneration"] = generation
        return out

    def close(self) -> None:
        """Stop what the reconciler keeps running between reconciles (the warm build worker)."""
        self.sandbox.close()

    async def forget(self, name: str, *, namespace: str | None = None) -> None:
        """The resource is deleted: drop its kept build, if any. What it published stays in
        the store (``stepflow gc`` and the bucket's lifecycle rules deal with it)."""
        await asyncio.to_thread(self.pending.discard, _resource(name, namespace))

    # -- source ---------------------------------------------------------------------------

    async def _source(self, out: Outcome, spec: PipelineSpec, credentials: GitCredentials | StepflowError | None,
                      generation: int, now: datetime) -> str | None:
        """Resolve the ref. ``credentials`` may be the front end's reason for having none (a
        missing or malformed Secret): a source failure, retried, since fixing a Secret does
        not touch the Pipeline and so would never wake a stalled one."""
        status = out.status
        try:
            if isinstance(credentials, StepflowError):
                raise SourceError(credentials.message, reason=credentials.reason, kind=INFRASTRUCTURE)
            with self.observer.stage("resolve"):
                commit = await asyncio.to_thread(self.source.resolve, spec.url, spec.ref, credentials, spec.timeout)
        except SourceError as exc:
            message = str(exc)
            self._condition(out, SOURCE_READY, "False", exc.reason, message, generation, now)
            status["conditions"] = cond.mark_failure(status.get("conditions"), kind=exc.kind,
                                                     observed_generation=generation, reason=exc.reason,
                                                     message=message, timestamp=timefmt.seconds(now))
            self._event(out, "Warning", exc.reason, message)
            out.requeue_after = min(spec.interval, 30.0)
            return None
        source = status.setdefault("source", {})
        previous = source.get("commit")
        source.update({"url": safe_url(spec.url), "revision": spec.ref.revision(commit), "commit": commit,
                       "fetchedAt": timefmt.seconds(now)})
        status.setdefault("summary", {})["revision"] = _short(commit)
        self._condition(out, SOURCE_READY, "True", "Succeeded",
                        f"{spec.ref.describe()} at {_short(commit)}", generation, now)
        if previous != commit:
            self._event(out, "Normal", reasons.NEW_REVISION, f"New revision {spec.ref.revision(commit)}")
        return commit

    # -- build, publish, upsert ------------------------------------------------------------

    async def _build_publish_upsert(self, out: Outcome, spec: PipelineSpec, commit: str,
                                    credentials: GitCredentials | None, generation: int, now: datetime, *,
                                    resource: str, forced: bool, progress: Progress | None) -> None:
        """Build the commit unless a build of the same inputs waits to be published, then
        publish and upsert it. A failed publish keeps the build for the next pass, which
        publishes it again after a backoff: a store that is down costs retries, not builds."""
        status = out.status
        revision = spec.ref.revision(commit)
        store = self.targets.store_for(spec)
        inputs = build_inputs(spec, commit, store.root_uri, self.integrity_key)
        pending = None if forced else self.pending.find(resource, inputs)
        if pending is None:
            pending = await self._build(out, spec, commit, credentials, generation, now, store=store,
                                        inputs=inputs, resource=resource, progress=progress)
            if pending is None:
                return
            doing = f"publishing {revision}"
        else:
            status.setdefault("lastBuild", pending.last_build)
            status.setdefault("source", {})["committedAt"] = timefmt.seconds(
                datetime.fromtimestamp(pending.committed_at, UTC))
            doing = f"publishing {revision} again (attempt {pending.failures + 1}); its build is kept"
        status["conditions"] = cond.mark_reconciling(status.get("conditions"), observed_generation=generation,
                                                     message=doing, timestamp=timefmt.seconds(now))
        await _report(progress, out)
        try:
            await self._publish_upsert(out, spec, pending.bundle, store, revision, generation, now)
        except StepflowError as exc:
            failures = pending.failed()
            self._failed(out, PUBLISHED, exc, generation, now,
                         retry_in=backoff(failures, min(spec.interval, MAX_RETRY_INTERVAL)))
            return
        self.pending.discard(resource)

    async def _build(self, out: Outcome, spec: PipelineSpec, commit: str, credentials: GitCredentials | None,
                     generation: int, now: datetime, *, store: ObjectStore, inputs: str, resource: str,
                     progress: Progress | None) -> PendingPublish | None:
        """Fetch and build ``commit``; the bundle of a successful build, kept until published."""
        status = out.status
        revision = spec.ref.revision(commit)
        status["conditions"] = cond.mark_reconciling(status.get("conditions"), observed_generation=generation,
                                                     message=f"building {revision}", timestamp=timefmt.seconds(now))
        await _report(progress, out)
        try:
            with self.observer.stage("fetch"):
                checkout = await asyncio.to_thread(self.source.fetch, spec.url, spec.ref, commit, credentials,
                                                   spec.timeout)
        except SourceError as exc:
            self._failed(out, SOURCE_READY, exc, generation, now, retry_in=None)
            return None
        committed = datetime.fromtimestamp(checkout.committed_at, UTC)
        status.setdefault("source", {})["committedAt"] = timefmt.seconds(committed)
        previous_name = (status.get("definition") or {}).get("pipelineName")
        started = datetime.now(UTC)
        bundle_dir: Path | None = None
        index_file: Path | None = None
        try:
            if previous_name:
                index = await asyncio.to_thread(read_index, store, previous_name)
                handle = tempfile.NamedTemporaryFile("w", suffix=".json", delete=False,
                                                     dir=self.work_dir)
                with handle:
                    json.dump(index, handle)
                index_file = Path(handle.name)
            with self.observer.stage("build") as build:
                result = await self.sandbox.build(BuildRequest(
                    checkout=checkout.path, module=spec.module, attr=spec.attr,
                    s3_root_uri=store.root_uri, requirements=spec.build.requirements,
                    previous_index=index_file, source_date_epoch=checkout.committed_at,
                    limits=Limits(timeout=spec.build.timeout, memory_bytes=spec.build.memory_bytes)))
                build.ok = result.ok
            bundle_dir = result.bundle_dir
            finished = datetime.now(UTC)
            status["lastBuild"] = {"revision": revision, "startedAt": timefmt.seconds(started),
                                   "finishedAt": timefmt.seconds(finished),
                                   "durationSeconds": round((finished - started).total_seconds(), 3),
                                   "reason": None if result.ok else result.reason,
                                   "message": None if result.ok else result.message,
                                   "file": result.file, "line": result.line,
                                   "kind": None if result.ok else (USER if result.user_error else INFRASTRUCTURE)}
            if not result.ok:
                self._build_failed(out, result.reason or reasons.BUILD_FAILED, result.message or "the build failed",
                                   result.file, result.line, status["lastBuild"]["kind"], generation, now)
                return None
            self._condition(out, BUILD_SUCCEEDED, "True", "Succeeded", f"built {revision}", generation, now)
            assert bundle_dir is not None  # a build that succeeded always has one
            if self.integrity_key is not None:  # once: a kept bundle is published as it is, signed
                await asyncio.to_thread(Bundle.open(bundle_dir).sign, self.integrity_key)
            pending = self.pending.keep(resource, inputs, bundle_dir, status["lastBuild"], checkout.committed_at)
            bundle_dir = None  # moved
            return pending
        except StepflowError as exc:
            self._failed(out, PUBLISHED, exc, generation, now)
            return None
        finally:
            checkout.cleanup()
            if bundle_dir is not None:
                shutil.rmtree(bundle_dir, ignore_errors=True)
            if index_file is not None:
                index_file.unlink(missing_ok=True)

    def _failed(self, out: Outcome, type_: str, exc: StepflowError, generation: int, now: datetime, *,
                retry_in: float | None = MAX_RETRY_INTERVAL) -> None:
        """``type_`` is False because of ``exc``; its kind decides stall or retry. ``retry_in``
        shortens the wait before the next pass (None: keep the reconcile's own)."""
        message = str(exc)
        self._condition(out, type_, "False", exc.reason, message, generation, now)
        out.status["conditions"] = cond.mark_failure(out.status["conditions"], kind=exc.kind,
                                                     observed_generation=generation, reason=exc.reason,
                                                     message=message, timestamp=timefmt.seconds(now))
        self._event(out, "Warning", exc.reason, message)
        if retry_in is not None:
            out.requeue_after = min(out.requeue_after or retry_in, retry_in)

    async def _publish_upsert(self, out: Outcome, spec: PipelineSpec, bundle: Bundle, store: ObjectStore,
                              revision: str, generation: int, now: datetime) -> None:
        status = out.status
        with self.observer.stage("publish"):
            report = await asyncio.to_thread(publish, bundle, store)
            backend = self.targets.backend_for(spec)
            await asyncio.to_thread(backend.upsert, bundle, store, role_arn=spec.role_arn, description=None,
                                    tags=None)
        self.observer.published(report)
        previous = status.get("definition") or {}
        status["definition"] = {
            "pipelineName": bundle.pipeline_name, "digest": bundle.digest, "uri": report.definition_uri,
            "steps": bundle.step_count, "compiledAt": timefmt.seconds(now), "revision": revision,
            "uploadedFiles": report.uploaded_files, "uploadedBytes": report.uploaded_bytes,
        }
        self._condition(out, PUBLISHED, "True", "Succeeded",
                        f"{report.uploaded_files} files ({report.uploaded_bytes} bytes) uploaded", generation, now)
        changed = previous.get("digest") != bundle.digest
        if changed:
            self._event(out, "Normal", reasons.DEFINITION_PUBLISHED,
                        f"Pipeline {bundle.pipeline_name} at {revision}: definition {bundle.digest[:19]} "
                        f"({bundle.step_count} steps, {report.uploaded_files} files uploaded)")
        self._ready(out, spec, generation, now)
        # onChange runs what is deployed: the definition *and* the trigger's parameters, so
        # editing spec.trigger.parameters runs again even when the code did not change.
        triggered = {"digest": bundle.digest, "parameters": dict(spec.trigger.parameters)}
        if spec.trigger.on_change and status.get("triggered") != triggered:
            key = hashlib.sha256(json.dumps(triggered, sort_keys=True).encode()).hexdigest()[:6]
            out.execution = ExecutionRequest(
                name=object_name(f"{spec.name}-{_short(revision.rsplit(':', 1)[-1])}-{key}"),
                revision=revision, definition_digest=bundle.digest, pipeline_name=bundle.pipeline_name,
                parameters=dict(spec.trigger.parameters), trigger="NewRevision")
            status["triggered"] = triggered

    # -- schedule ------------------------------------------------------------------------

    def _schedule(self, out: Outcome, spec: PipelineSpec, now: datetime) -> None:
        status = out.status
        if not spec.trigger.schedule:
            status.pop("nextScheduleTime", None)
            return
        last = timefmt.parse_or_none(status.get("lastScheduleTime"))
        due = timefmt.parse_or_none(status.get("nextScheduleTime"))
        definition = status.get("definition") or {}
        if due is not None and now >= due and definition.get("digest") and out.execution is None:
            out.execution = ExecutionRequest(
                name=object_name(f"{spec.name}-s{due.strftime('%Y%m%d%H%M')}"), revision=definition.get("revision", ""),
                definition_digest=definition["digest"], pipeline_name=definition["pipelineName"],
                parameters=dict(spec.trigger.parameters), trigger="Schedule")
            status["lastScheduleTime"] = timefmt.seconds(due)
            last = due
        following = spec.trigger.next_fire(max(now, last or now))
        assert following is not None  # checked above: the trigger has a schedule
        status["nextScheduleTime"] = timefmt.seconds(following)
        until = (following - now).total_seconds()
        out.requeue_after = max(1.0, min(out.requeue_after or until, until))

    # -- conditions and events -----------------------------------------------------------

    def _ready(self, out: Outcome, spec: PipelineSpec, generation: int, now: datetime) -> None:
        d = out.status.get("definition") or {}
        revision = d.get("revision") or ""
        short = revision[:revision.find(":") + 8] if ":" in revision else revision
        message = (f"Applied revision {short}: pipeline {d.get('pipelineName')}, {d.get('steps')} steps, "
                   f"definition {(d.get('digest') or '')[:19]}")
        out.status["conditions"] = cond.mark_ready(out.status.get("conditions"), observed_generation=generation,
                                                   message=message, timestamp=timefmt.seconds(now))

    def _build_failed(self, out: Outcome, reason: str, message: str, file: str | None,
                      line: int | None, kind: str, generation: int, now: datetime) -> None:
        where = f"{file}:{line}" if file and line else file or ""
        text = f"{message} ({where})" if where and where not in message else message
        kept = (out.status.get("definition") or {}).get("revision")
        if kept:
            text += f" The last good definition (from {kept}) stays current."
        self._condition(out, BUILD_SUCCEEDED, "False", reason, text, generation, now)
        out.status["conditions"] = cond.mark_failure(out.status.get("conditions"), kind=kind,
                                                     observed_generation=generation, reason=reason,
                                                     message=text, timestamp=timefmt.seconds(now))
        self._event(out, "Warning", reason, text)

    def _stalled(self, out: Outcome, generation: int, reason: str, message: str, now: datetime) -> Outcome:
        out.status["conditions"] = cond.mark_stalled(out.status.get("conditions"), observed_generation=generation,
                                                     reason=reason, message=message, timestamp=timefmt.seconds(now))
        out.status["observedGeneration"] = generation
        self._event(out, "Warning", reason, message)
        out.requeue_after = None
        return out

    def _condition(self, out: Outcome, type_: str, value: str, reason: str, message: str, generation: int,
                   now: datetime) -> None:
        out.status["conditions"] = cond.set_condition(out.status.get("conditions"), type_, value, reason=reason,
                                                      message=message, observed_generation=generation,
                                                      timestamp=timefmt.seconds(now))

    @staticmethod
    def _event(out: Outcome, type_: str, reason: str, message: str) -> None:
        out.events.append(Event(type_, reason, message))


__all__ = ["Event", "ExecutionRequest", "Outcome", "Reconciler", "BUILD_SUCCEEDED", "PUBLISHED", "SOURCE_READY"]
