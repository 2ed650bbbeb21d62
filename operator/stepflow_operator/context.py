"""What every handler shares in one operator process, built once at start-up."""

from __future__ import annotations

import asyncio
import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from stepflow.backends.base import Backend
from stepflow.backends.local import LocalBackend
from stepflow.gitops.reconciler import Reconciler
from stepflow.gitops.spec import PipelineSpec
from stepflow.gitops.targets import BackendFactory, Targets, sagemaker_backend
from stepflow.storage import ObjectStore
from stepflow_operator.kube import Kube, api_client
from stepflow_operator.metrics import PipelineConditions, ReconcileMetrics
from stepflow_operator.receiver import Registry
from stepflow_operator.settings import EXECUTIONS, GROUP, VERSION, OperatorConfig, step_environment

if TYPE_CHECKING:
    from stepflow_operator.executions import ExecutionRun


@dataclass
class Runs:
    """The executions this process drives, so deleting a Pipeline can stop its runs, and
    which execution of each Pipeline is the latest (the one its status summarises)."""

    _by_pipeline: dict[tuple[str, str], dict[str, ExecutionRun]] = field(
        default_factory=lambda: defaultdict(dict))
    _latest: dict[tuple[str, str], tuple[str, str]] = field(default_factory=dict)

    def add(self, namespace: str, pipeline: str, name: str, run: ExecutionRun) -> None:
        self._by_pipeline[(namespace, pipeline)][name] = run

    def remove(self, namespace: str, pipeline: str, name: str) -> None:
        runs = self._by_pipeline.get((namespace, pipeline))
        if runs is not None:
            runs.pop(name, None)
            if not runs:
                del self._by_pipeline[(namespace, pipeline)]

    def of(self, namespace: str, pipeline: str) -> list[ExecutionRun]:
        return list(self._by_pipeline.get((namespace, pipeline), {}).values())

    def claim_latest(self, namespace: str, pipeline: str, name: str, started_at: str,
                     recorded: tuple[str, str] | None) -> bool:
        """Make ``name`` the Pipeline's latest execution unless a newer one holds it.

        ``recorded`` is ``(startedAt, name)`` from the Pipeline's status, which a restarted
        operator must respect: a resumed old execution does not hide a newer finished one.
        """
        key = (namespace, pipeline)
        holder = max(filter(None, (self._latest.get(key), recorded)), default=None)
        if holder is not None and holder[1] != name and holder > (started_at, name):
            return False
        self._latest[key] = (started_at, name)
        return True

    def is_latest(self, namespace: str, pipeline: str, name: str) -> bool:
        latest = self._latest.get((namespace, pipeline))
        return latest is not None and latest[1] == name


@dataclass
class Context:
    config: OperatorConfig
    reconciler: Reconciler
    kube: Kube
    reconcile_slots: asyncio.Semaphore
    runs: Runs = field(default_factory=Runs)
    conditions: PipelineConditions = field(default_factory=PipelineConditions)
    receivers: Registry = field(default_factory=Registry)

    @classmethod
    def create(cls, config: OperatorConfig) -> Context:
        run_dir = config.work_dir / "runs"

        step_env = step_environment(os.environ, config)
        (config.work_dir / "home").mkdir(parents=True, exist_ok=True)

        def local(store: ObjectStore, spec: PipelineSpec) -> Backend:
            # One run dir for every execution, kept across restarts: the launcher finds the
            # detached step processes of a resumed execution there. Steps get the store's
            # credentials and nothing else of the operator's environment; the key on a pipe.
            return LocalBackend(store, run_dir=run_dir, env=step_env,
                                integrity_key=config.integrity_key)

        backends: dict[str, BackendFactory] = {"local": local, "sagemaker": sagemaker_backend}
        if config.steps is not None:
            backends["kubernetes"] = kubernetes_backends(config, run_dir)
        # Each Pipeline resource publishes and runs in its own <root>/<namespace>/<name> store.
        targets = Targets(default_s3_root_uri=config.default_s3_root_uri, s3_endpoint_url=config.s3_endpoint_url,
                          backends=backends, default_backend=config.default_backend, per_resource=True)
        reconciler = Reconciler(work_dir=config.work_dir, integrity_key=config.integrity_key, targets=targets,
                                observer=ReconcileMetrics())
        return cls(config=config, reconciler=reconciler, kube=Kube(api_client(config.workers + 4)),
                   reconcile_slots=asyncio.Semaphore(config.max_reconciles))

    def close(self) -> None:
        self.reconciler.close()
        self.kube.api.close()


#: Watches per running execution (its Jobs, its pods) plus creates and reads: a roomy pool.
_STEP_API_POOL = 64


def kubernetes_backends(config: OperatorConfig, run_dir: Path) -> BackendFactory:
    """Steps as Jobs in the Pipeline's namespace, owned by their PipelineExecution."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    from stepflow.backends.kubernetes import KubernetesBackend, KubernetesTarget
    from stepflow.backends.kubernetes.jobspec import check_overrides

    steps = config.steps
    assert steps is not None
    api = api_client(_STEP_API_POOL)
    custom = client.CustomObjectsApi(api)

    def factory(store: ObjectStore, spec: PipelineSpec) -> Backend:
        namespace = spec.namespace or "default"
        check_overrides(spec.kubernetes, f"Pipeline {spec.name}: spec.kubernetes")

        def owner(execution: str) -> dict[str, Any] | None:
            try:
                found = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, EXECUTIONS, execution)
            except ApiException as exc:
                if exc.status == 404:
                    return None
                raise
            uid = cast(dict[str, Any], found)["metadata"]["uid"]
            return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "PipelineExecution", "name": execution, "uid": uid}

        target = KubernetesTarget(namespace=namespace, settings=steps, overrides=spec.kubernetes,
                                  patience=config.patience)
        return KubernetesBackend(store, target, api=api, owner=owner, run_dir=run_dir)

    return factory
