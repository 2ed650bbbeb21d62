"""A ``Pipeline`` resource's spec, parsed and checked once, with errors a person can act on.

The API server's schema already refuses most malformed specs; what it cannot check (cron
syntax, durations it only pattern-matches, whether an S3 URI names a real bucket shape,
local paths for the embedded loop) is checked here, so the operator and ``stepflow up``
report the same reason for the same mistake.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from stepflow.errors import ConfigurationError
from stepflow.gitops.source import Ref
from stepflow.timefmt import parse_duration

_MEMORY = re.compile(r"^(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|K|M|G|T)?$")
_UNITS = {None: 1, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12,
          "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}


#: What ``spec.backend`` may name (the CRD's enum); whether this installation serves it is
#: :class:`~stepflow.gitops.targets.Targets`' call.
BACKENDS = ("local", "kubernetes", "sagemaker")

#: The shortest ``spec.source.interval`` (Flux's intervals are seconds, not milliseconds).
MIN_INTERVAL = 1.0


def parse_memory(text: str | None, what: str, default: int | None) -> int | None:
    """``512Mi``, ``2Gi``, ``1G`` (Kubernetes quantities) → bytes."""
    if text in (None, ""):
        return default
    match = _MEMORY.match(str(text).strip())
    if not match:
        raise ConfigurationError(f"{what} is {text!r}, not a memory size; write it like 512Mi or 2Gi.",
                                 reason="InvalidSpec")
    return int(float(match.group(1)) * _UNITS[match.group(2)])


@dataclass(frozen=True)
class TriggerSpec:
    on_change: bool = True
    schedule: str | None = None
    parameters: Mapping[str, Any] = field(default_factory=dict)

    def next_fire(self, after: datetime) -> datetime | None:
        if not self.schedule:
            return None
        from croniter import croniter

        return croniter(self.schedule, after).get_next(datetime)


@dataclass(frozen=True)
class BuildSpec:
    requirements: str | None = None
    timeout: float = 300.0
    memory_bytes: int | None = 2 * 1024**3


@dataclass(frozen=True)
class PipelineSpec:
    name: str
    url: str
    ref: Ref
    module: str
    namespace: str | None = None
    attr: str | None = None
    secret_name: str | None = None
    interval: float = 60.0
    timeout: float = 60.0
    s3_root_uri: str | None = None
    #: None: the installation's default (the operator's chart says, ``stepflow up`` runs locally).
    backend: str | None = None
    #: Pod settings for the kubernetes backend (serviceAccountName, nodeSelector, podTemplate, ...).
    kubernetes: Mapping[str, Any] = field(default_factory=dict)
    #: The sagemaker backend's execution role (``spec.sagemaker.roleArn``); None: configured default.
    role_arn: str | None = None
    trigger: TriggerSpec = TriggerSpec()
    suspend: bool = False
    history_limit: int = 10
    build: BuildSpec = BuildSpec()

    @classmethod
    def from_manifest(cls, spec: Mapping[str, Any], *, name: str, namespace: str | None = None,
                      base_dir: str | os.PathLike[str] | None = None) -> PipelineSpec:
        """Check ``spec`` (a Pipeline's ``.spec``); ``base_dir`` resolves relative local paths."""
        if not isinstance(spec, Mapping):
            raise ConfigurationError(f"Pipeline {name}: spec must be a mapping.", reason="InvalidSpec")
        source = spec.get("source") or {}
        if not isinstance(source, Mapping) or not source.get("url"):
            raise ConfigurationError(
                f"Pipeline {name}: spec.source.url is required (the git repository: https://, "
                "ssh://, file:// or, for `stepflow up`, a local path).", reason="InvalidSpec")
        module = spec.get("module")
        if not module or not isinstance(module, str):
            raise ConfigurationError(
                f"Pipeline {name}: spec.module is required: the pipeline's file in the repository "
                "(e.g. pipelines/churn.py) or a dotted module name.", reason="InvalidSpec")
        trigger = spec.get("trigger") or {}
        schedule = trigger.get("schedule") or None
        if schedule is not None:
            _check_cron(name, schedule)
        s3_root_uri = spec.get("s3RootUri") or None
        if s3_root_uri is not None:
            _check_store(name, s3_root_uri)
        backend = spec.get("backend") or None
        if backend is not None and backend not in BACKENDS:
            raise ConfigurationError(
                f"Pipeline {name}: spec.backend {backend!r} is not a backend; use one of "
                f"{', '.join(BACKENDS)} (or leave it empty for the installation's default).",
                reason="UnsupportedBackend")
        kubernetes = spec.get("kubernetes") or {}
        if not isinstance(kubernetes, Mapping):
            raise ConfigurationError(f"Pipeline {name}: spec.kubernetes must be a mapping.", reason="InvalidSpec")
        sagemaker = spec.get("sagemaker") or {}
        if not isinstance(sagemaker, Mapping):
            raise ConfigurationError(f"Pipeline {name}: spec.sagemaker must be a mapping (roleArn: ...).",
                                     reason="InvalidSpec")
        history = spec.get("historyLimit", 10)
        if not isinstance(history, int) or history < 1:
            raise ConfigurationError(f"Pipeline {name}: spec.historyLimit must be an integer ≥ 1.",
                                     reason="InvalidSpec")
        build = spec.get("build") or {}
        return cls(
            name=name, namespace=namespace,
            url=_source_url(str(source["url"]), base_dir),
            ref=Ref.from_spec(source.get("ref")),
            module=module, attr=spec.get("pipeline") or None,
            secret_name=(source.get("secretRef") or {}).get("name"),
            interval=_interval(name, source.get("interval")),
            timeout=parse_duration(source.get("timeout"), "spec.source.timeout", 60.0),
            s3_root_uri=s3_root_uri, backend=backend, kubernetes=dict(kubernetes),
            role_arn=sagemaker.get("roleArn") or None,
            trigger=TriggerSpec(on_change=trigger.get("onChange", True) is not False, schedule=schedule,
                                parameters=dict(trigger.get("parameters") or {})),
            suspend=bool(spec.get("suspend", False)), history_limit=history,
            build=BuildSpec(requirements=build.get("requirements") or None,
                            timeout=parse_duration(build.get("timeout"), "spec.build.timeout", 300.0),
                            memory_bytes=parse_memory(build.get("memoryLimit"), "spec.build.memoryLimit",
                                                      2 * 1024**3)),
        )


def _interval(name: str, text: str | None) -> float:
    """``spec.source.interval``, at least ``MIN_INTERVAL``: every pass costs the git server
    a request, so a millisecond interval is a flood, not a faster GitOps loop."""
    seconds = parse_duration(text, "spec.source.interval", 60.0)
    if seconds < MIN_INTERVAL:
        raise ConfigurationError(
            f"Pipeline {name}: spec.source.interval {text!r} is shorter than the minimum of "
            f"{MIN_INTERVAL:g}s; use 1s or more (1m is usual; a push webhook reacts at once).",
            reason="InvalidInterval")
    return seconds


def _check_cron(name: str, schedule: str) -> None:
    from croniter import croniter

    fields = schedule.split()
    if (not schedule.startswith("@") and len(fields) != 5) or not croniter.is_valid(schedule):
        raise ConfigurationError(
            f"Pipeline {name}: spec.trigger.schedule {schedule!r} is not a valid cron expression; "
            "use five fields (minute hour day-of-month month day-of-week; no seconds field), e.g. "
            "'0 3 * * *', or a macro such as @daily.",
            reason="InvalidSchedule")


def _check_store(name: str, uri: str) -> None:
    from stepflow.storage import open_store

    try:
        open_store(uri)
    except ConfigurationError as exc:
        raise ConfigurationError(f"Pipeline {name}: spec.s3RootUri: {exc.message}",
                                 reason="InvalidS3RootUri") from None


def _source_url(url: str, base_dir: str | os.PathLike[str] | None) -> str:
    """Remote URLs pass through; a local path becomes ``file://`` (relative to ``base_dir``)."""
    if re.match(r"^[a-z][a-z0-9+.-]*://", url):
        return url
    path = Path(url).expanduser()
    if not path.is_absolute():
        path = Path(base_dir or os.getcwd()) / path
    return path.resolve().as_uri()
