"""A step attempt's Job manifest and the reading of its Job and pod: pure functions, no cluster.

What a real cluster does with these manifests (pods running, OOM kills, deadlines, pulls
that fail) is tested in e2e/realpods/test_kubernetes_backend.py; here, every field the step's
definition sets, what publish refuses, and each failure reason from the status the
kubelet and the Job controller write.
"""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from stepflow.backends.kubernetes import KubernetesTarget
from stepflow.backends.kubernetes.failures import Patience, classify
from stepflow.backends.kubernetes.jobspec import (
    StepPodSettings,
    check_overrides,
    check_step,
    job_manifest,
    job_name,
    strategic_merge,
)
from stepflow.backends.kubernetes.resources import DEFAULT_INSTANCE_TYPES, load_table
from stepflow.errors import ConfigurationError, ValidationError
from stepflow.timefmt import seconds, utcnow

SETTINGS = StepPodSettings(runner_image="stepflow.test/runner:1", s3_credentials_secret="s3",
                           s3_endpoint_url="http://10.0.0.1:9000", integrity_key_secret="signing",
                           instance_types=DEFAULT_INSTANCE_TYPES)


def _arguments(**over) -> dict:
    args = {"AlgorithmSpecification": {"TrainingImage": "python:3.11-slim"},
            "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 30},
            "StoppingCondition": {"MaxRuntimeInSeconds": 600},
            "Environment": {"MODE": "fast", "AWS_DEFAULT_REGION": "us-east-1"}}
    args.update(over)
    return args


def _job(**kw) -> dict:
    base = dict(pipeline="churn", execution_id="churn-20261201t0100-ab12", step="train", attempt=2,
                arguments=_arguments(), container_arguments=["--s3_base_uri", "s3://b/churn"], settings=SETTINGS)
    base.update(kw)
    return job_manifest(**base)


def test_the_job_carries_the_step_its_size_deadline_and_environment():
    job = _job(owner={"apiVersion": "stepflow.dev/v1alpha1", "kind": "PipelineExecution", "name": "x", "uid": "u"})
    assert job["metadata"]["name"] == "churn-20261201t0100-ab12-train-2"
    assert job["metadata"]["labels"] == {"stepflow.dev/pipeline": "churn",
                                         "stepflow.dev/execution": "churn-20261201t0100-ab12",
                                         "stepflow.dev/step": "train", "stepflow.dev/attempt": "2"}
    assert job["metadata"]["ownerReferences"][0]["kind"] == "PipelineExecution"
    spec = job["spec"]
    assert (spec["backoffLimit"], spec["activeDeadlineSeconds"], spec["ttlSecondsAfterFinished"]) == (0, 600, 3600)
    pod = spec["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False and pod["restartPolicy"] == "Never"
    assert "shareProcessNamespace" not in pod
    (stage,) = pod["initContainers"]
    container, collect = pod["containers"]
    assert container["image"] == "stepflow.test/runner:1"  # the compiler's placeholder: the runner image
    runtime_args = ["--s3_base_uri", "s3://b/churn", "--attempt", "2"]
    assert stage["command"] == ["python", "-m", "stepflow.runtime.pod", "stage", "/stepflow/attempt", *runtime_args]
    assert container["command"] == ["python", "-m", "stepflow.runtime.pod", "user", "/stepflow/attempt"]
    assert collect["command"] == ["python", "-m", "stepflow.runtime.pod", "collect", "/stepflow/attempt",
                                  *runtime_args]
    assert container["resources"]["limits"] == {"memory": "8Gi", "ephemeral-storage": "30Gi"}
    assert container["resources"]["requests"] == {"cpu": "2", "memory": "8Gi", "ephemeral-storage": "0"}
    step_env = {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}
    assert step_env["MODE"] == "fast" and step_env["STEPFLOW_ATTEMPT_ID"] == "churn-20261201t0100-ab12/train/2"
    for trusted in (stage, collect):
        assert trusted["image"] == "stepflow.test/runner:1"
        env = {e["name"]: e.get("value", e.get("valueFrom")) for e in trusted["env"]}
        assert env["STEPFLOW_S3_ENDPOINT_URL"] == "http://10.0.0.1:9000"
        assert env["AWS_SECRET_ACCESS_KEY"] == {"secretKeyRef": {"name": "s3", "key": "AWS_SECRET_ACCESS_KEY"}}
        assert env["STEPFLOW_INTEGRITY_KEY_FILE"] == "/etc/stepflow/integrity/key"
        assert "STEPFLOW_INTEGRITY_KEY" not in env and "MODE" not in env
    # Every container shares the attempt folder; the key's volume only the runtime's own two.
    mounts = {c["name"]: {m["name"]: m["mountPath"] for m in c["volumeMounts"]} for c in (stage, container, collect)}
    assert all(m["stepflow"] == "/stepflow" for m in mounts.values())
    assert mounts["stage"]["integrity-key"] == mounts["collect"]["integrity-key"] == "/etc/stepflow/integrity"
    assert "integrity-key" not in mounts["step"]
    (secret_volume,) = [v for v in pod["volumes"] if "secret" in v]
    assert secret_volume["name"] == "integrity-key" and secret_volume["secret"]["secretName"] == "signing"
    # The step's container: neither the key nor the store's credentials, by value or by reference.
    assert not any(name.startswith(("STEPFLOW_INTEGRITY", "AWS_ACCESS", "AWS_SECRET")) or "valueFrom" in e
                   for e in container["env"] for name in [e["name"]]), container["env"]
    assert not container.get("envFrom")
    assert {c["name"]: c["securityContext"] for c in (stage, container, collect)} == {
        n: {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]}} for n in ("stage", "step", "collect")}


def test_without_a_key_secret_no_container_gets_a_key():
    job = _job(settings=StepPodSettings(runner_image="r:1", instance_types=DEFAULT_INSTANCE_TYPES))
    pod = job["spec"]["template"]["spec"]
    assert not any("secret" in v for v in pod["volumes"])
    assert not any(e["name"].startswith("STEPFLOW_INTEGRITY") for c in pod["containers"] + pod["initContainers"]
                   for e in c["env"])


def test_a_gpu_type_requests_gpus_and_a_step_image_is_used_as_given():
    job = _job(arguments=_arguments(AlgorithmSpecification={"TrainingImage": "team/train:7"},
                                    ResourceConfig={"InstanceType": "ml.g5.xlarge", "InstanceCount": 1}))
    container, collect = job["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "team/train:7" and collect["image"] == "stepflow.test/runner:1"
    assert container["resources"]["requests"] == {"cpu": "4", "memory": "16Gi", "nvidia.com/gpu": "1"}
    assert container["resources"]["limits"] == {"memory": "16Gi", "nvidia.com/gpu": "1"}


def test_job_names_are_deterministic_labels_within_63_characters():
    long = job_name("a-very-long-execution-name-" * 3, "Train_Model", 1)
    assert long == job_name("a-very-long-execution-name-" * 3, "Train_Model", 1)
    assert len(long) <= 63 and long.islower() and "_" not in long
    assert job_name("e", "Train_2", 1) != job_name("e", "train-2", 1)


@pytest.mark.parametrize(("resources", "reason", "words"), [
    ({"InstanceType": "ml.x99.huge", "InstanceCount": 1}, "UnknownInstanceType", "ml.x99.huge"),
    ({"InstanceType": "ml.m5.large", "InstanceCount": 2}, "UnsupportedInstanceCount", "instance_count=2"),
    ({"InstanceType": {"Get": "Parameters.Type"}, "InstanceCount": 1}, "UnsupportedInstanceType", "expression"),
])
def test_what_no_pod_could_run_is_refused_at_publish(resources, reason, words):
    with pytest.raises(ValidationError) as info:
        check_step("train", _arguments(ResourceConfig=resources), SETTINGS)
    assert info.value.reason == reason and words in str(info.value) and "'train'" in str(info.value)


def test_pipeline_overrides_and_the_pod_template_patch_apply_last():
    overrides = {"serviceAccountName": "trainer", "nodeSelector": {"pool": "gpu"},
                 "tolerations": [{"key": "gpu", "operator": "Exists"}], "priorityClassName": "batch",
                 "podTemplate": {"metadata": {"labels": {"team": "ml"}},
                                 "spec": {"containers": [{"name": "step", "env": [{"name": "MODE", "value": "slow"}]}],
                                          "hostNetwork": None}}}
    pod_template = _job(overrides=overrides)["spec"]["template"]
    pod = pod_template["spec"]
    assert (pod["serviceAccountName"], pod["nodeSelector"], pod["priorityClassName"]) == \
        ("trainer", {"pool": "gpu"}, "batch")
    assert pod_template["metadata"]["labels"]["team"] == "ml"
    assert pod_template["metadata"]["labels"]["stepflow.dev/step"] == "train"
    env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    assert env["MODE"] == "slow" and "STEPFLOW_ATTEMPT_ID" in env  # merged by name, nothing lost
    with pytest.raises(ValidationError, match="hostPID"):
        check_overrides({"hostPID": True}, "Pipeline p: spec.kubernetes")


def test_strategic_merge_replaces_lists_without_a_merge_key():
    merged = strategic_merge({"tolerations": [{"key": "a"}], "volumes": [{"name": "v", "emptyDir": {}}]},
                             {"tolerations": [{"key": "b"}], "volumes": [{"name": "w", "emptyDir": {}}]})
    assert merged == {"tolerations": [{"key": "b"}],
                      "volumes": [{"name": "v", "emptyDir": {}}, {"name": "w", "emptyDir": {}}]}


def test_the_instance_table_file_extends_the_defaults_and_bad_entries_are_named(tmp_path):
    path = tmp_path / "types.yaml"
    path.write_text("ml.m5.large: {cpu: 100m, memory: 64Mi}\nml.tiny: {cpu: '1', memory: 1Gi, gpu: 0}\n")
    table = load_table(path)
    assert table["ml.m5.large"].memory == "64Mi" and "ml.tiny" in table and "ml.g5.xlarge" in table
    path.write_text("ml.bad: {cpu: lots, memory: 1Gi}\n")
    with pytest.raises(ConfigurationError, match="ml.bad: cpu 'lots'"):
        load_table(path)


def test_the_target_round_trips_through_json_for_a_detached_orchestrator():
    target = KubernetesTarget(namespace="team", settings=SETTINGS, overrides={"nodeSelector": {"a": "b"}},
                              patience=Patience(image_pull=5))
    assert KubernetesTarget.from_json(target.to_json()) == target


# -- reading a Job and its pod ------------------------------------------------------------

NOW = utcnow()


def _pod(age: float = 0.0, waiting: dict | None = None, terminated: dict | None = None,
         scheduled: dict | None = None, **status) -> dict:
    state = {"waiting": waiting} if waiting else {"terminated": terminated} if terminated else {"running": {}}
    conditions = [scheduled] if scheduled else []
    if terminated:
        status.setdefault("phase", "Succeeded" if terminated.get("exitCode") == 0 else "Failed")
    return {"metadata": {"name": "p", "creationTimestamp": seconds(NOW - timedelta(seconds=age))},
            "spec": {"containers": [{"name": "step", "image": "team/x:nope",
                                     "resources": {"limits": {"memory": "64Mi"}}}]},
            "status": {"containerStatuses": [{"name": "step", "image": "team/x:nope", "state": state}],
                       "conditions": conditions, **status}}


def _job_with(*conditions: tuple[str, str], deadline: int | None = None) -> dict:
    return {"metadata": {"name": "j"}, "spec": {"activeDeadlineSeconds": deadline},
            "status": {"conditions": [{"type": t, "status": "True", "reason": r} for t, r in conditions]}}


def test_running_and_completed():
    assert classify(_job_with(), _pod(), NOW).state == "running"
    assert classify(_job_with(), None, NOW).state == "running"
    done = classify(_job_with(("Complete", "")), _pod(terminated={"exitCode": 0, "reason": "Completed"}), NOW)
    assert (done.state, done.exit_code, done.reason) == ("exited", 0, None)


@pytest.mark.parametrize(("job", "pod", "reason", "kind"), [
    (_job_with(), _pod(waiting={"reason": "ErrImageNeverPull", "message": "not present"}), "ImagePullFailed", "User"),
    (_job_with(), _pod(age=120, waiting={"reason": "ImagePullBackOff"}), "ImagePullFailed", "User"),
    (_job_with(("Failed", "BackoffLimitExceeded")), _pod(terminated={"exitCode": 137, "reason": "OOMKilled"}),
     "OutOfMemory", "User"),
    (_job_with(("Failed", "DeadlineExceeded"), deadline=5), _pod(), "MaxRuntimeExceeded", "User"),
    (_job_with(), _pod(age=400, scheduled={"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                           "message": "0/1 nodes are available: 1 Insufficient cpu."}),
     "Unschedulable", "Infrastructure"),
    (_job_with(), _pod(reason="Evicted", message="low on memory"), "Evicted", "Infrastructure"),
])
def test_failure_reasons(job, pod, reason, kind):
    verdict = classify(job, pod, NOW)
    assert verdict.state == "exited" and verdict.reason.startswith(f"{reason}: ") and verdict.kind == kind


def test_a_pod_is_over_when_all_its_containers_are():
    """A processing step's uploader runs on after the step's own container exited."""
    pod = _pod(terminated={"exitCode": 0, "reason": "Completed"}, phase="Running")
    assert classify(_job_with(), pod, NOW).state == "running"


def _staging(state: dict, phase: str = "Pending") -> dict:
    """A @step pod whose init container (the runtime's staging) is in ``state``."""
    pod = _pod(waiting={"reason": "PodInitializing"}, phase=phase)
    pod["status"]["initContainerStatuses"] = [{"name": "stage", "image": "stepflow.test/runner:gone", "state": state}]
    return pod


def test_the_runtime_containers_failures_are_named_too():
    pull = classify(_job_with(), _staging({"waiting": {"reason": "ErrImageNeverPull"}}), NOW)
    assert pull.reason.startswith("ImagePullFailed: image 'stepflow.test/runner:gone'") and pull.kind == "User"
    failed = classify(_job_with(("Failed", "BackoffLimitExceeded")),
                      _staging({"terminated": {"exitCode": 3, "reason": "Error"}}, phase="Failed"), NOW)
    assert failed.reason.startswith("StagingFailed: ") and "'stage' exited with code 3" in failed.reason
    assert failed.kind == "Infrastructure"
    staging = _staging({"running": {}})
    assert classify(_job_with(), staging, NOW).state == "running"
    staging["status"]["initContainerStatuses"][0]["state"] = {"terminated": {"exitCode": 0}}
    assert classify(_job_with(), staging, NOW).state == "running"


def test_stuck_pods_get_their_patience_first():
    assert classify(_job_with(), _pod(age=10, waiting={"reason": "ImagePullBackOff"}), NOW).state == "running"
    unschedulable = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "no"}
    assert classify(_job_with(), _pod(age=10, scheduled=unschedulable), NOW, Patience(unschedulable=30)).state \
        == "running"
    late = classify(_job_with(), _pod(age=31, scheduled=unschedulable), NOW, Patience(unschedulable=30))
    assert late.reason == "Unschedulable: no node could run the step's pod for 30 s: no"
    oom = classify(_job_with(), _pod(terminated={"exitCode": 137, "reason": "OOMKilled"}), NOW)
    assert "64Mi" in oom.reason and "'team/x:nope'" in classify(
        _job_with(), _pod(waiting={"reason": "ErrImageNeverPull"}), NOW).reason


def test_a_processing_step_downloads_inputs_before_and_uploads_outputs_after_its_image():
    from stepflow.backends.kubernetes.jobspec import processing_job_manifest

    arguments = {"AppSpecification": {"ImageUri": "team/prep:1", "ContainerEntrypoint": ["python3",
                                                                                        "/opt/ml/processing/input/code/prep.py"]},
                 "ProcessingResources": {"ClusterConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1,
                                                           "VolumeSizeInGB": 30}},
                 "Environment": {"MODE": "x"}}
    job = processing_job_manifest(pipeline="p", execution_id="e", step="prep", attempt=1, arguments=arguments,
                                  container_arguments=["--rows", "10"], store_uri="s3://b/p",
                                  inputs=[("s3://b/raw/", "/opt/ml/processing/input")],
                                  outputs=[("/opt/ml/processing/train", "s3://b/p/e/prep/output/train")],
                                  settings=SETTINGS)
    pod = job["spec"]["template"]["spec"]
    (init,) = pod["initContainers"]
    step, outputs = pod["containers"]
    assert init["command"][:4] == ["python", "-m", "stepflow.runtime.processing", "download"]
    assert outputs["command"][:4] == ["python", "-m", "stepflow.runtime.processing", "upload"]
    spec = json.loads(outputs["command"][4])
    assert spec["inputs"] == [["s3://b/raw/", "/opt/ml/processing/input"]]
    assert spec["outputs"] == [["/opt/ml/processing/train", "s3://b/p/e/prep/output/train"]]
    assert (spec["store"], spec["execution"], spec["step"], spec["attempt"]) == ("s3://b/p", "e", "prep", 1)
    assert step["image"] == "team/prep:1" and init["image"] == outputs["image"] == "stepflow.test/runner:1"
    assert step["command"][-4:] == ["python3", "/opt/ml/processing/input/code/prep.py", "--rows", "10"]
    assert step["resources"]["requests"]["memory"] == "8Gi"
    assert {m["mountPath"] for m in step["volumeMounts"]} >= {"/opt/ml/processing"}
    assert not any(v.get("secret") for v in pod["volumes"])  # no pickles here: no integrity key either
