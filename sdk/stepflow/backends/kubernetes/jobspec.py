"""One step attempt as a Job manifest: pure, from the step's definition and the settings.

The step's ``Arguments`` are SageMaker's CreateTrainingJob request; each field that has a
meaning on a cluster becomes its Kubernetes equivalent (image, resources through the
instance table, environment, deadline, ephemeral storage). What the Pipeline adds for its
cluster (``spec.kubernetes``) is applied last, the ``podTemplate`` patch after everything.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from stepflow.backends.kubernetes.resources import InstanceType
from stepflow.errors import ValidationError
from stepflow.k8s_names import dns_label, job_name, label_value

PIPELINE_LABEL = "stepflow.dev/pipeline"
EXECUTION_LABEL = "stepflow.dev/execution"
STEP_LABEL = "stepflow.dev/step"
ATTEMPT_LABEL = "stepflow.dev/attempt"
#: The pod's containers: the step's own, and the trusted ones around a @step's (``job_manifest``).
CONTAINER, STAGE_CONTAINER, COLLECT_CONTAINER = "step", "stage", "collect"
KEY_DIR = "/etc/stepflow/integrity"
#: The compiler's placeholder when a step names no image (``python:3.X-slim``): the runner image runs it.
_PLACEHOLDER_IMAGE = re.compile(r"^python:\d+\.\d+-slim$")
#: What ``spec.kubernetes`` may set; anything else is refused with this list.
OVERRIDE_KEYS = ("serviceAccountName", "automountServiceAccountToken", "nodeSelector", "tolerations", "affinity",
                 "imagePullSecrets", "priorityClassName", "podTemplate")


@dataclass(frozen=True)
class StepPodSettings:
    """What an installation decides for every step pod (the chart's ``steps.*`` values)."""

    runner_image: str
    image_pull_policy: str = "IfNotPresent"
    #: A Secret in the step's namespace with AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY.
    s3_credentials_secret: str | None = None
    s3_endpoint_url: str | None = None
    region: str | None = None
    #: A Secret in the step's namespace with key ``key``: the artifacts' HMAC key.
    integrity_key_secret: str | None = None
    ttl_seconds_after_finished: int = 3600
    run_as_user: int = 65534
    #: The most Jobs one execution runs at once (a fan-out waits for a slot); None: no limit.
    max_parallel_jobs: int | None = None
    instance_types: Mapping[str, InstanceType] = field(default_factory=dict)


def labels(pipeline: str, execution_id: str, step: str | None = None, attempt: int | None = None) -> dict[str, str]:
    out = {PIPELINE_LABEL: label_value(dns_label(pipeline)), EXECUTION_LABEL: label_value(dns_label(execution_id))}
    if step is not None:
        out[STEP_LABEL] = dns_label(step)
    if attempt is not None:
        out[ATTEMPT_LABEL] = str(attempt)
    return out


def resolved_image(arguments: Mapping[str, Any], settings: StepPodSettings) -> str:
    image = ((arguments.get("AlgorithmSpecification") or {}).get("TrainingImage")) or ""
    if not isinstance(image, str) or not image or _PLACEHOLDER_IMAGE.match(image):
        return settings.runner_image
    return image


def step_resources(arguments: Mapping[str, Any]) -> Mapping[str, Any]:
    """InstanceType, InstanceCount, VolumeSizeInGB: a training job's ``ResourceConfig``, a
    processing job's ``ProcessingResources.ClusterConfig``."""
    if "ProcessingResources" in arguments:
        return (arguments.get("ProcessingResources") or {}).get("ClusterConfig") or {}
    return arguments.get("ResourceConfig") or {}


def check_step(name: str, arguments: Mapping[str, Any], settings: StepPodSettings) -> None:
    """What publish refuses for this backend, with the step and the fix in the message."""
    resources = step_resources(arguments)
    count = resources.get("InstanceCount", 1)
    if count not in (None, 1):
        raise ValidationError(
            f"Step {name!r}: instance_count={count!r} is not supported on the kubernetes backend (one pod "
            "per step attempt); use instance_count=1, or run the pipeline on the sagemaker backend.",
            reason="UnsupportedInstanceCount")
    instance = resources.get("InstanceType")
    if not isinstance(instance, str):
        raise ValidationError(
            f"Step {name!r}: instance_type is an expression ({instance!r}); the kubernetes backend sizes "
            "pods when the pipeline is published, so give a literal instance type.",
            reason="UnsupportedInstanceType")
    if instance not in settings.instance_types:
        known = ", ".join(sorted(settings.instance_types))
        raise ValidationError(
            f"Step {name!r}: instance_type {instance!r} is not in this cluster's instance table (known: "
            f"{known}). Use one of them, or ask the platform team to add it (chart value "
            "steps.instanceTypes).", reason="UnknownInstanceType")
    for key, value in (("max_runtime_in_seconds", (arguments.get("StoppingCondition") or {})
                        .get("MaxRuntimeInSeconds")), ("volume_size", resources.get("VolumeSizeInGB"))):
        if value is not None and not isinstance(value, int):
            raise ValidationError(f"Step {name!r}: {key} is an expression ({value!r}); the kubernetes backend "
                                  "needs a literal number.", reason="UnsupportedStepSetting")


def check_overrides(overrides: Mapping[str, Any], where: str) -> None:
    unknown = sorted(set(overrides) - set(OVERRIDE_KEYS))
    if unknown:
        raise ValidationError(f"{where}: unknown key(s) {', '.join(unknown)}; spec.kubernetes takes "
                              f"{', '.join(OVERRIDE_KEYS)}.", reason="InvalidSpec")


def job_manifest(*, pipeline: str, execution_id: str, step: str, attempt: int, arguments: Mapping[str, Any],
                 container_arguments: Sequence[str], settings: StepPodSettings,
                 overrides: Mapping[str, Any] | None = None,
                 owner: Mapping[str, Any] | None = None,
                 environment: Mapping[str, str] | None = None) -> dict[str, Any]:
    """A @step attempt as three containers on one folder (``stepflow.runtime.pod``): the
    init container ``stage`` downloads and verifies the artifacts, the step's container runs
    the user's code, ``collect`` beside it signs and stores what it produced. Only the two
    runner-image containers get the integrity key and the store's credentials; the step's
    container gets its declared environment, nothing else. ``environment``: the step's
    ``Environment`` with its expressions resolved (the engine's launch); None: the
    definition's literal values."""
    check_step(step, arguments, settings)
    resources = step_resources(arguments)
    instance = settings.instance_types[resources["InstanceType"]]
    if environment is None:
        environment = arguments.get("Environment") or {}
    attempt_id = [{"name": "STEPFLOW_ATTEMPT_ID", "value": f"{execution_id}/{step}/{attempt}"}]
    mounts: list[dict[str, Any]] = [{"name": "stepflow", "mountPath": _SHARED_DIR},
                                    {"name": "tmp", "mountPath": "/tmp"}]
    volumes: list[dict[str, Any]] = [{"name": n, "emptyDir": {}} for n in ("stepflow", "tmp")]
    trusted_env, trusted_mounts = attempt_id + _store_env(settings), list(mounts)
    if settings.integrity_key_secret:
        trusted_env.append({"name": "STEPFLOW_INTEGRITY_KEY_FILE", "value": f"{KEY_DIR}/key"})
        trusted_mounts.append({"name": "integrity-key", "mountPath": KEY_DIR, "readOnly": True})
        volumes.append({"name": "integrity-key", "secret": {"secretName": settings.integrity_key_secret,
                                                            "defaultMode": 0o440,
                                                            "items": [{"key": "key", "path": "key"}]}})
    runtime_args = [*container_arguments, "--attempt", str(attempt)]
    sized = instance.resources(resources.get("VolumeSizeInGB"))
    trusted = {"image": settings.runner_image, "imagePullPolicy": settings.image_pull_policy,
               "env": trusted_env, "volumeMounts": trusted_mounts, "securityContext": _CONTAINER_SECURITY}
    # Staging runs before the step: sized like it, it costs the pod nothing more.
    stage = {"name": STAGE_CONTAINER, **trusted, "resources": sized,
             "command": [*_POD_RUNTIME, "stage", ATTEMPT_DIR, *runtime_args]}
    # Collecting holds the result in memory: the step's memory limit, a small request.
    collect = {"name": COLLECT_CONTAINER, **trusted,
               "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": instance.memory}},
               "command": [*_POD_RUNTIME, "collect", ATTEMPT_DIR, *runtime_args]}
    user = {
        "name": CONTAINER, "image": resolved_image(arguments, settings),
        "imagePullPolicy": settings.image_pull_policy,
        "command": [*_POD_RUNTIME, "user", ATTEMPT_DIR],
        "env": [{"name": str(k), "value": str(v)} for k, v in environment.items()] + attempt_id + _home_env(),
        "volumeMounts": mounts, "resources": sized, "securityContext": _CONTAINER_SECURITY,
    }
    return _job(pipeline, execution_id, step, attempt, arguments, settings, overrides, owner,
                _pod([user, collect], volumes, settings, init=[stage]))


_CONTAINER_SECURITY = {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "runAsNonRoot": True,
                       "capabilities": {"drop": ["ALL"]}}
#: Where a processing step's inputs and outputs live in its pod (SageMaker's convention).
PROCESSING_DIR = "/opt/ml/processing"
#: The emptyDir a pod's containers share: a @step's attempt folder, a processing step's exit file.
_SHARED_DIR = "/stepflow"
ATTEMPT_DIR = f"{_SHARED_DIR}/attempt"
_EXIT_FILE = f"{_SHARED_DIR}/exit"
_POD_RUNTIME = ("python", "-m", "stepflow.runtime.pod")


def _home_env() -> list[dict[str, Any]]:
    """Where a container's Python may write (the root filesystem is read-only)."""
    return [{"name": "HOME", "value": "/tmp"}, {"name": "STEPFLOW_CACHE_DIR", "value": "/tmp/stepflow-cache"}]


def _store_env(settings: StepPodSettings) -> list[dict[str, Any]]:
    """What a trusted container needs to reach the store: endpoint, region, credentials from a Secret."""
    env = _home_env()
    if settings.s3_endpoint_url:
        env.append({"name": "STEPFLOW_S3_ENDPOINT_URL", "value": settings.s3_endpoint_url})
    if settings.region:
        env.append({"name": "AWS_REGION", "value": settings.region})
    if settings.s3_credentials_secret:
        env += [{"name": k, "valueFrom": {"secretKeyRef": {"name": settings.s3_credentials_secret, "key": k}}}
                for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")]
    return env


def _pod(containers: list[dict[str, Any]], volumes: list[dict[str, Any]], settings: StepPodSettings,
         init: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    pod: dict[str, Any] = {
        "restartPolicy": "Never",
        # A step never gets an API token unless its Pipeline asks (spec.kubernetes).
        "automountServiceAccountToken": False, "enableServiceLinks": False,
        "securityContext": {"runAsUser": settings.run_as_user, "runAsGroup": settings.run_as_user,
                            "fsGroup": settings.run_as_user, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": containers, "volumes": volumes,
    }
    if init:
        pod["initContainers"] = init
    return pod


def processing_job_manifest(*, pipeline: str, execution_id: str, step: str, attempt: int,
                            arguments: Mapping[str, Any], container_arguments: Sequence[str], store_uri: str,
                            inputs: Sequence[tuple[str, str]], outputs: Sequence[tuple[str, str]],
                            settings: StepPodSettings, overrides: Mapping[str, Any] | None = None,
                            owner: Mapping[str, Any] | None = None,
                            environment: Mapping[str, str] | None = None) -> dict[str, Any]:
    """A ProcessingStep as a Job, with SageMaker's processing contract: an init container
    downloads each input (``(s3 uri, local path)``) before the step's image starts; beside it,
    a container in the runner image waits for the step's command to exit, uploads each
    output (``(local path, s3 uri)``) and writes the attempt record. ``store_uri`` is the
    pipeline's store (where the record goes). The step's image needs ``/bin/sh``."""
    check_step(step, arguments, settings)
    resources = step_resources(arguments)
    instance = settings.instance_types[resources["InstanceType"]]
    app = arguments.get("AppSpecification") or {}
    image = app.get("ImageUri")
    if not isinstance(image, str) or not image:
        raise ValidationError(f"Step {step!r}: AppSpecification.ImageUri must be a literal image.",
                              reason="UnsupportedStepSetting")
    spec = {"store": store_uri, "execution": execution_id, "step": step, "attempt": attempt,
            "inputs": [list(i) for i in inputs], "outputs": [list(o) for o in outputs], "exit_file": _EXIT_FILE}
    spec_json = json.dumps(spec)
    mounts = [{"name": "processing", "mountPath": PROCESSING_DIR}, {"name": "stepflow", "mountPath": _SHARED_DIR},
              {"name": "tmp", "mountPath": "/tmp"}]
    volumes: list[dict[str, Any]] = [{"name": n, "emptyDir": {}} for n in ("processing", "stepflow", "tmp")]
    store_env = _store_env(settings)
    helper = {"image": settings.runner_image, "imagePullPolicy": settings.image_pull_policy, "env": store_env,
              "volumeMounts": mounts, "securityContext": _CONTAINER_SECURITY,
              "resources": {"requests": {"cpu": "50m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}}}
    download = {"name": "inputs", **helper, "command": ["python", "-m", "stepflow.runtime.processing", "download",
                                                         spec_json]}
    upload = {"name": "outputs", **helper, "command": ["python", "-m", "stepflow.runtime.processing", "upload",
                                                        spec_json]}
    command = [*(app.get("ContainerEntrypoint") or []), *container_arguments]
    if environment is None:
        environment = arguments.get("Environment") or {}
    user = {
        "name": CONTAINER, "image": image, "imagePullPolicy": settings.image_pull_policy,
        # The exit code goes to a file the uploader waits for (no API access needed in the pod).
        "command": ["/bin/sh", "-c", f'"$@"; code=$?; echo $code > {_EXIT_FILE}; exit $code', "sh", *command],
        "env": [{"name": str(k), "value": str(v)} for k, v in environment.items()],
        "volumeMounts": mounts, "resources": instance.resources(resources.get("VolumeSizeInGB")),
        "securityContext": {k: v for k, v in _CONTAINER_SECURITY.items() if k != "readOnlyRootFilesystem"},
    }
    return _job(pipeline, execution_id, step, attempt, arguments, settings, overrides, owner,
                _pod([user, upload], volumes, settings, init=[download]))


def _job(pipeline: str, execution_id: str, step: str, attempt: int, arguments: Mapping[str, Any],
         settings: StepPodSettings, overrides: Mapping[str, Any] | None, owner: Mapping[str, Any] | None,
         pod: dict[str, Any]) -> dict[str, Any]:
    """The Job around ``pod``: labels, owner, deadline, TTL, and the Pipeline's overrides last."""
    deadline = (arguments.get("StoppingCondition") or {}).get("MaxRuntimeInSeconds")
    overrides = dict(overrides or {})
    patch = overrides.pop("podTemplate", None)
    pod.update({k: copy.deepcopy(v) for k, v in overrides.items() if v not in (None, "", [], {})})
    step_labels = labels(pipeline, execution_id, step, attempt)
    template: dict[str, Any] = {"metadata": {"labels": dict(step_labels)}, "spec": pod}
    if patch:
        template = strategic_merge(template, patch)
    spec: dict[str, Any] = {"backoffLimit": 0, "ttlSecondsAfterFinished": settings.ttl_seconds_after_finished,
                            "template": template}
    if deadline:
        spec["activeDeadlineSeconds"] = int(deadline)
    metadata: dict[str, Any] = {"name": job_name(execution_id, step, attempt), "labels": step_labels,
                                "annotations": {"stepflow.dev/step-name": step}}
    if owner:
        metadata["ownerReferences"] = [dict(owner)]
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": metadata, "spec": spec}


#: The merge keys of the pod template's lists (Kubernetes' ``patchMergeKey``); other lists are replaced.
_MERGE_KEYS = {"containers": "name", "initContainers": "name", "volumes": "name", "env": "name",
               "volumeMounts": "mountPath", "imagePullSecrets": "name", "ports": "containerPort"}


def strategic_merge(base: Any, patch: Any, key: str | None = None) -> Any:
    """Kubernetes' strategic merge for what a pod template holds: maps merge, ``null`` deletes,
    lists with a merge key merge item by item, other lists are replaced."""
    if isinstance(base, Mapping) and isinstance(patch, Mapping):
        out = dict(base)
        for k, v in patch.items():
            if v is None:
                out.pop(k, None)
            else:
                out[k] = strategic_merge(base.get(k), v, k)
        return out
    merge_key = _MERGE_KEYS.get(key or "")
    if merge_key and isinstance(base, list) and isinstance(patch, list):
        out_list = [copy.deepcopy(item) for item in base]
        for item in patch:
            at = next((i for i, b in enumerate(out_list) if isinstance(item, Mapping) and isinstance(b, Mapping)
                       and b.get(merge_key) == item.get(merge_key)), None)
            if at is None:
                out_list.append(copy.deepcopy(item))
            else:
                out_list[at] = strategic_merge(out_list[at], item)
        return out_list
    return copy.deepcopy(patch)
