"""The operator's configuration: our settings from the environment, and kopf's settings.

Everything comes from environment variables so the chart's ConfigMap is the one place an
installation is configured (``charts/stepflow/templates/configmap.yaml``). A mistake stops
the operator at start-up with a message naming the variable, never at the first reconcile.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import kopf

from stepflow.backends.kubernetes.failures import Patience
from stepflow.backends.kubernetes.jobspec import StepPodSettings
from stepflow.backends.kubernetes.settings import patience_from_env, step_pods_from_env
from stepflow.errors import ConfigurationError

GROUP = "stepflow.dev"
VERSION = "v1alpha1"
PIPELINES = "pipelines"
EXECUTIONS = "pipelineexecutions"
RECEIVERS = "receivers"

#: Like Flux's ``reconcile.fluxcd.io/requestedAt``: any new value asks for a reconcile now.
RECONCILE_ANNOTATION = "stepflow.dev/reconcile-requested-at"
#: On every PipelineExecution: the Pipeline it runs (for ``kubectl get sfx -l``).
PIPELINE_LABEL = "stepflow.dev/pipeline"
TRIGGER_ANNOTATION = "stepflow.dev/trigger"

DEFAULT_WORK_DIR = "/var/cache/stepflow"
#: Ports as in Flux: metrics apart from the webhook receiver, each on its own Service.
DEFAULT_METRICS_ADDRESS = "0.0.0.0:8081"
DEFAULT_RECEIVER_ADDRESS = "0.0.0.0:9292"


@dataclass(frozen=True)
class OperatorConfig:
    """What an installation decides; read once at start-up."""

    work_dir: Path
    default_s3_root_uri: str | None = None
    s3_endpoint_url: str | None = None
    integrity_key: bytes | None = None
    #: Threads for blocking work (git, S3, the API client). Executions get their own threads.
    workers: int = 16
    #: Reconciles (ls-remote, build, publish) in flight at once; builds are CPU-heavy.
    max_reconciles: int = 8
    #: Shortest time between two status patches of one execution (coalesces step updates).
    status_interval: float = 0.25
    #: ``host:port`` of ``/metrics`` and of the webhook receiver; None: not served.
    metrics_address: str | None = DEFAULT_METRICS_ADDRESS
    receiver_address: str | None = DEFAULT_RECEIVER_ADDRESS
    #: What Pipelines that leave ``spec.backend`` empty run on.
    default_backend: str = "local"
    #: Step pods of the kubernetes backend (None: that backend is not served).
    steps: StepPodSettings | None = None
    patience: Patience = Patience()

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> OperatorConfig:
        from stepflow.config import load_config
        from stepflow.storage.s3_clients import Limits

        try:
            key = load_config(env).integrity_key
            Limits.from_env(env)  # a bad S3 deadline stops the operator now, not at the first publish
        except ConfigurationError as exc:
            raise ConfigurationError(f"operator configuration: {exc}", reason="InvalidOperatorConfig") from None
        default_backend = env.get("STEPFLOW_DEFAULT_BACKEND") or "local"
        if default_backend not in ("local", "kubernetes", "sagemaker"):
            raise ConfigurationError(f"STEPFLOW_DEFAULT_BACKEND={default_backend!r}: this operator serves "
                                     "'local', 'kubernetes' and 'sagemaker'.", reason="InvalidOperatorConfig")
        steps = step_pods_from_env(env)
        if default_backend == "kubernetes" and steps is None:
            raise ConfigurationError("STEPFLOW_DEFAULT_BACKEND=kubernetes needs STEPFLOW_RUNNER_IMAGE (the chart's "
                                     "steps.image): the image step pods run.", reason="InvalidOperatorConfig")
        return cls(
            default_backend=default_backend, steps=steps, patience=patience_from_env(env),
            work_dir=Path(env.get("STEPFLOW_CACHE_DIR") or DEFAULT_WORK_DIR),
            default_s3_root_uri=env.get("STEPFLOW_S3_ROOT_URI") or None,
            s3_endpoint_url=env.get("STEPFLOW_S3_ENDPOINT_URL") or None,
            integrity_key=key,
            workers=_positive_int(env, "STEPFLOW_OPERATOR_WORKERS", 16),
            max_reconciles=_positive_int(env, "STEPFLOW_OPERATOR_MAX_RECONCILES", 8),
            metrics_address=_address(env, "STEPFLOW_METRICS_ADDRESS", DEFAULT_METRICS_ADDRESS),
            receiver_address=_address(env, "STEPFLOW_RECEIVER_ADDRESS", DEFAULT_RECEIVER_ADDRESS),
        )


def _positive_int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ConfigurationError(f"{name}={raw!r} is not a positive integer; unset it or give e.g. {default}",
                                 reason="InvalidOperatorConfig")
    return value


def _address(env: Mapping[str, str], name: str, default: str) -> str | None:
    """``host:port`` (host may be empty: every interface), or None for ``off``."""
    raw = env.get(name, "").strip() or default
    if raw == "off":
        return None
    host, sep, port = raw.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigurationError(f"{name}={raw!r} is not host:port (e.g. {default}) or 'off'",
                                 reason="InvalidOperatorConfig")
    return f"{host or '0.0.0.0'}:{port}"


#: The namespaces the operator watches, comma-separated (names or kopf patterns); empty for
#: all. ``__main__`` sets it from ``--namespace`` too, for the handlers' start-up.
WATCH_NAMESPACES_ENV = "STEPFLOW_WATCH_NAMESPACES"
#: What makes a kopf namespace pattern (``ml-*``, ``!kube-*``) rather than a name.
_PATTERN = re.compile(r"[*?\[\]!,]")


def split_namespaces(text: str) -> list[str]:
    return [n.strip() for n in text.split(",") if n.strip()]


def names_only(namespaces: list[str]) -> bool:
    """Some namespaces are watched, every one by its exact name."""
    return bool(namespaces) and not any(_PATTERN.search(n) for n in namespaces)


def configure_kopf(settings: kopf.OperatorSettings, namespaces: list[str] | None = None) -> None:
    """kopf's knobs for this operator.

    * Our status keys only: nothing is stored under handler ids (our handlers return None
      and write ``.status`` themselves); kopf's own bookkeeping, if any, goes to
      ``stepflow.dev/*`` annotations.
    * Events are ours: kopf's own "Handler succeeded" chatter is not posted as Events
      (posting level WARNING); ours are posted with an explicit type, whatever the level.
    * Watches reconnect quickly after an API server restart.
    * Namespaces watched by name only (``namespaces``): kopf does not list or watch
      namespaces (nor CRDs) to discover them. A namespaced install is not allowed to, and kopf
      then retried the listing for ~55 s at every start before it fell back to the names:
      a standby's takeover took 77 s instead of 22 s on a real cluster. The operator's CRDs
      exist before it starts, so there is nothing to discover.
    """
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration")
    settings.posting.level = logging.WARNING
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.reconnect_backoff = 1.0
    settings.scanning.disabled = names_only(namespaces or [])


class QuietWakeups(logging.Filter):
    """Drops kopf's per-watch-event "Handler 'wake' succeeded." line: it says nothing new."""

    def __init__(self, handler_ids: tuple[str, ...]) -> None:
        super().__init__()
        self._lines = tuple(f"Handler {h!r} succeeded." for h in handler_ids)

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() not in self._lines


#: What a step's runtime may see of the operator's environment: enough to reach the store,
#: nothing that reaches the cluster (no KUBECONFIG, no KUBERNETES_*), no operator settings.
#: (The step's own code sees less still: stepflow.runtime.isolation.)
_STEP_ENV_KEYS = ("PATH", "LANG", "LC_ALL", "TZ", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE",
                  "STEPFLOW_S3_ENDPOINT_URL", "STEPFLOW_CACHE_DIR", "STEPFLOW_STEP_UID",
                  "STEPFLOW_STEP_PYTHON", "STEPFLOW_BUILD_PYTHON")
_STEP_ENV_PREFIXES = ("AWS_",)


def step_environment(env: Mapping[str, str], config: OperatorConfig) -> dict[str, str]:
    """The environment of step processes started by the operator's local backend."""
    out = {k: v for k, v in env.items() if k in _STEP_ENV_KEYS or k.startswith(_STEP_ENV_PREFIXES)}
    out["HOME"] = str(config.work_dir / "home")
    if config.s3_endpoint_url:
        out["STEPFLOW_S3_ENDPOINT_URL"] = config.s3_endpoint_url
    # No integrity key here: the local backend passes it on a pipe (stepflow.runtime.key).
    return out
