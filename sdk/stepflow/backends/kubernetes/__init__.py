"""The kubernetes backend: every step attempt is a Job; the engine decides, as everywhere.

Records, state, results and logs live in the store exactly as with the local backend (this
class *is* the local backend with another launcher), so ``describe``, ``list_steps``,
``result`` and ``stepflow logs`` work the same from any process. What differs is where an
attempt runs: a Job per attempt in the Pipeline's namespace, built by
:mod:`~stepflow.backends.kubernetes.jobspec`, observed by
:class:`~stepflow.backends.kubernetes.jobs.JobLauncher` through watches. The runtime in the
pod reads its function and arguments from the store and writes its results and attempt
record there, so the orchestrator learns outcomes as it does for local processes.

Needs the ``kubernetes`` extra (``pip install 'stepflow[kubernetes]'``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stepflow import layout
from stepflow.backends.kubernetes.failures import Patience
from stepflow.backends.kubernetes.jobs import JobLauncher
from stepflow.backends.kubernetes.jobspec import StepPodSettings, check_step, job_manifest, processing_job_manifest
from stepflow.backends.kubernetes.resources import InstanceType
from stepflow.backends.local import LocalBackend
from stepflow.engine import Plan
from stepflow.errors import ConfigurationError
from stepflow.storage import ObjectStore

if TYPE_CHECKING:
    from kubernetes import client

    from stepflow.compiler.bundle import Bundle

#: ``owner(execution_id)`` → an ownerReference for the execution's Jobs (the operator's
#: PipelineExecution), or None.
OwnerOf = Callable[[str], "Mapping[str, Any] | None"]
#: The step types this backend runs: ``@step`` functions, and processing containers.
RUNNABLE = ("Training", "Processing")


@dataclass(frozen=True)
class KubernetesTarget:
    """Where and how an execution's Jobs run: everything a detached orchestrator needs."""

    namespace: str
    settings: StepPodSettings
    overrides: Mapping[str, Any] = field(default_factory=dict)
    patience: Patience = Patience()
    #: For a process outside the cluster: the kubeconfig context (None: current / in-cluster).
    context: str | None = None

    def to_json(self) -> str:
        data = asdict(self)
        data["settings"]["instance_types"] = {k: asdict(v) for k, v in self.settings.instance_types.items()}
        return json.dumps(data)

    @classmethod
    def from_json(cls, text: str) -> KubernetesTarget:
        data = json.loads(text)
        settings = dict(data["settings"])
        settings["instance_types"] = {k: InstanceType(**v) for k, v in settings["instance_types"].items()}
        return cls(namespace=data["namespace"], settings=StepPodSettings(**settings),
                   overrides=data.get("overrides") or {}, patience=Patience(**data["patience"]),
                   context=data.get("context"))


def api_client(context: str | None = None) -> client.ApiClient:
    """In a pod, the pod's service account; elsewhere, the kubeconfig (``context`` or current)."""
    from kubernetes import client, config

    if os.environ.get("KUBERNETES_SERVICE_HOST") and context is None:
        config.load_incluster_config()
        return client.ApiClient()
    return config.new_client_from_config(context=context)


def current_namespace(context: str | None = None) -> str:
    """The namespace of the kubeconfig's (current) context, ``default`` when it names none."""
    from kubernetes import config

    if os.environ.get("KUBERNETES_SERVICE_HOST") and context is None:
        path = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
        return path.read_text().strip() if path.exists() else "default"
    contexts, active = config.list_kube_config_contexts()
    chosen = next((c for c in contexts if c["name"] == context), active) if context else active
    return str(((chosen or {}).get("context") or {}).get("namespace") or "default")


class KubernetesBackend(LocalBackend):
    """``store`` is the store root; ``api`` a Kubernetes client (or a callable making one)."""

    name = "kubernetes"

    def __init__(self, store: ObjectStore | Callable[[], ObjectStore], target: KubernetesTarget, *,
                 api: client.ApiClient | Callable[[], client.ApiClient] | None = None,
                 owner: OwnerOf | None = None, run_dir: Path | None = None,
                 integrity_key: bytes | None = None) -> None:
        super().__init__(store, run_dir=run_dir, parallelism=target.settings.max_parallel_jobs,
                         integrity_key=integrity_key)
        self.target = target
        self._api = api
        self.owner = owner

    @property
    def api(self) -> client.ApiClient:
        if self._api is None:
            self._api = api_client(self.target.context)
        elif callable(self._api) and not hasattr(self._api, "call_api"):
            self._api = self._api()
        return self._api  # type: ignore[return-value]

    def upsert(self, bundle: Bundle, store: ObjectStore, *, role_arn: str | None = None,
               description: str | None = None, tags: Sequence[Mapping[str, str]] | None = None,
               parallelism: int | None = None) -> dict:
        """Refuse at publish what no pod could run (unknown instance type, several instances, a
        store only this machine sees)."""
        if self.store.root_uri.startswith("file://"):
            raise ConfigurationError(
                f"Pipeline {bundle.pipeline_name}: its store {self.store.root_uri} is a local folder, which step "
                "pods cannot reach; give the Pipeline an s3:// store (spec.s3RootUri, or the chart's "
                "operator.s3RootUri), or run it on backend local.", reason="StoreNotReachableFromPods")
        for step in Plan.from_definition(json.loads(bundle.definition_bytes)).steps.values():
            if step.type in RUNNABLE:
                check_step(step.name, step.arguments, self.target.settings)
        return super().upsert(bundle, store, role_arn=role_arn, description=description, tags=tags,
                              parallelism=parallelism)

    def _launcher(self, pipeline_name: str, execution_id: str, plan: Plan) -> JobLauncher:
        owner = self.owner(execution_id) if self.owner is not None else None

        def make_job(step: str, attempt: int, arguments: Sequence[str],
                     environment: Mapping[str, str] | None = None) -> dict[str, Any]:
            common: dict[str, Any] = {
                "pipeline": pipeline_name, "execution_id": execution_id, "step": step, "attempt": attempt,
                "arguments": plan.step(step).arguments, "container_arguments": arguments,
                "settings": self.target.settings, "overrides": self.target.overrides, "owner": owner,
                "environment": environment}
            if plan.step(step).type == "Processing":
                inputs, outputs = self._processing_channels(plan, pipeline_name, execution_id, step)
                return processing_job_manifest(**common, store_uri=self.pipeline_store(pipeline_name).root_uri,
                                               inputs=inputs, outputs=outputs)
            return job_manifest(**common)

        return JobLauncher(self.api, self.target.namespace, pipeline_name, execution_id, make_job,
                           self.target.patience)

    def _processing_channels(self, plan: Plan, pipeline_name: str, execution_id: str, step: str
                             ) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        """The step's inputs ``(s3 uri, path)`` and outputs ``(path, s3 uri)``, their expressions
        (an upstream step's output or model, the execution id in a default destination) evaluated
        from the state the orchestrator recorded before launching."""
        from stepflow.backends.job_descriptions import JobBook
        from stepflow.backends.orchestrator import Documents
        from stepflow.engine import resolve, to_text

        state = self.execution_state(pipeline_name, execution_id)
        documents = Documents(plan, JobBook(self.pipeline_store(pipeline_name), plan, state))

        def text(value: Any) -> str:
            return to_text(documents.evaluate(state, lambda context: resolve(value, context)))

        arguments = plan.step(step).arguments
        inputs = [(text(i["S3Input"]["S3Uri"]), i["S3Input"]["LocalPath"])
                  for i in arguments.get("ProcessingInputs") or ()]
        outputs = [(o["S3Output"]["LocalPath"], text(o["S3Output"]["S3Uri"]))
                   for o in (arguments.get("ProcessingOutputConfig") or {}).get("Outputs") or ()]
        return inputs, outputs

    def _save_log(self, launcher: Any, pstore: ObjectStore, execution_id: str, step: str, attempt: int) -> None:
        data = launcher.log(execution_id, step, attempt)
        if data is not None:
            pstore.put_bytes(layout.attempt_log_key(execution_id, step, attempt), data)

    orchestrator_module = "stepflow.backends.kubernetes"

    def _orchestrator_env(self) -> dict[str, str]:
        return {TARGET_ENV: self.target.to_json()}


#: How a detached orchestrator receives its target (JSON).
TARGET_ENV = "STEPFLOW_KUBERNETES_TARGET"
