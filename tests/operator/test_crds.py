"""The CRDs on a real API server: accepted specs, refused specs, no status pruning, columns."""

from __future__ import annotations

import json
import re
import secrets
from pathlib import Path

import pytest
import yaml

CRDS = Path(__file__).resolve().parents[2] / "crds"
SHA = "4f1c2a9e0b7d3c5f6a8e9d0c1b2a3f4e5d6c7b8a"


def _ns(kube) -> str:
    name = f"crd-{secrets.token_hex(4)}"
    kube.kubectl("create", "namespace", name)
    return name


def _pipeline(name: str = "churn", **spec_overrides) -> dict:
    spec = {
        "source": {"url": "https://git.example.com/ml/churn.git", "ref": {"branch": "main"}},
        "module": "pipelines/churn.py",
    }
    spec.update(spec_overrides)
    return {"apiVersion": "stepflow.dev/v1alpha1", "kind": "Pipeline",
            "metadata": {"name": name}, "spec": spec}


def _apply(kube, ns: str, obj: dict, check: bool = True):
    return kube.kubectl("-n", ns, "create", "-f", "-", input=json.dumps(obj), check=check)


def _get(kube, ns: str, kind: str, name: str) -> dict:
    return json.loads(kube.kubectl("-n", ns, "get", kind, name, "-o", "json").stdout)


def _patch_status(kube, ns: str, kind: str, name: str, status: dict) -> None:
    kube.kubectl("-n", ns, "patch", kind, name, "--subresource=status", "--type=merge",
                 "-p", json.dumps({"status": status}))


def test_crds_are_established_with_short_names(kube):
    crds = json.loads(kube.kubectl("get", "crd", "-o", "json").stdout)["items"]
    by_name = {c["metadata"]["name"]: c for c in crds}
    for name, short in (("pipelines.stepflow.dev", "sfp"),
                        ("pipelineexecutions.stepflow.dev", "sfx")):
        crd = by_name[name]
        established = [c for c in crd["status"]["conditions"] if c["type"] == "Established"]
        assert established and established[0]["status"] == "True"
        assert short in crd["spec"]["names"]["shortNames"]
        assert crd["spec"]["versions"][0]["subresources"] == {"status": {}}
    ns = _ns(kube)
    assert "No resources found" in kube.kubectl("-n", ns, "get", "sfp,sfx").stderr


def test_valid_pipeline_is_accepted_with_defaults(kube):
    ns = _ns(kube)
    _apply(kube, ns, _pipeline(
        s3RootUri="s3://ml-artifacts/stepflow", pipeline="pipeline",
        source={"url": "ssh://git@git.example.com/ml/churn.git", "ref": {"tag": "v1.2"},
                "secretRef": {"name": "git-auth"}, "interval": "1m30s", "timeout": "45s"},
        trigger={"onChange": False, "schedule": "0 3 * * *",
                 "parameters": {"epochs": 3, "lr": 0.1, "name": "x", "full": True}},
        build={"requirements": "ci/requirements.txt", "timeout": "2m", "memoryLimit": "512Mi"}))
    _apply(kube, ns, _pipeline("minimal", source={"url": "file:///srv/git/churn.git"}))
    full = _get(kube, ns, "pipeline", "churn")["spec"]
    assert full["trigger"]["parameters"] == {"epochs": 3, "lr": 0.1, "name": "x", "full": True}
    assert full["source"]["ref"] == {"tag": "v1.2"}
    minimal = _get(kube, ns, "pipeline", "minimal")["spec"]
    assert "backend" not in minimal  # the installation's default applies (the chart's operator.defaultBackend)
    assert minimal["suspend"] is False
    assert minimal["historyLimit"] == 10
    assert minimal["source"]["interval"] == "1m"
    assert minimal["source"]["timeout"] == "60s"
    assert "s3RootUri" not in minimal  # the operator's configured default applies


@pytest.mark.parametrize("overrides, expected", [
    ({"source": {"url": "https://g.example/r.git", "interval": "5 minutes"}},
     "spec.source.interval"),
    ({"source": {"url": "https://g.example/r.git", "timeout": "10"}}, "spec.source.timeout"),
    ({"source": {"url": "https://g.example/r.git", "interval": "1ms"}},
     "spec.source.interval must be at least 1s"),
    ({"source": {"url": "https://g.example/r.git", "ref": {"branch": "main", "tag": "v1"}}},
     "spec.source.ref must set exactly one of branch, tag or commit"),
    ({"source": {"url": "https://g.example/r.git", "ref": {}}},
     "spec.source.ref must set exactly one of branch, tag or commit"),
    ({"source": {"url": "https://g.example/r.git", "ref": {"commit": "abc123"}}},
     "spec.source.ref.commit"),
    ({"source": {"url": "git@github.com:ml/churn.git"}}, "spec.source.url"),
    ({"source": {"url": "https://bob:hunter2@g.example/r.git"}},
     "spec.source.url must not contain a password"),
    ({"s3RootUri": "gs://bucket/prefix"}, "spec.s3RootUri"),
    ({"s3RootUri": "s3://Upper_Case/prefix"}, "spec.s3RootUri"),
    ({"s3RootUri": "file://relative/path"}, "spec.s3RootUri"),
    ({"backend": "lambda"}, 'spec.backend: Unsupported value: "lambda"'),
    ({"historyLimit": 0}, "spec.historyLimit"),
    ({"build": {"memoryLimit": "lots"}}, "spec.build.memoryLimit"),
    ({"module": ""}, "spec.module"),
])
def test_bad_specs_are_refused_with_the_field_named(kube, overrides, expected):
    ns = _ns(kube)
    proc = _apply(kube, ns, _pipeline(**overrides), check=False)
    assert proc.returncode != 0, proc.stdout
    assert expected in proc.stderr, proc.stderr
    assert "hunter2" not in proc.stderr  # the CEL rule does not echo the value
    assert kube.kubectl("-n", ns, "get", "pipelines", "-o", "name").stdout == ""


def test_module_path_traversal_is_left_to_the_operator(kube):
    """`../../etc/passwd` must reach the operator, which reports InvalidModulePath."""
    ns = _ns(kube)
    _apply(kube, ns, _pipeline(module="../../etc/passwd"))
    assert _get(kube, ns, "pipeline", "churn")["spec"]["module"] == "../../etc/passwd"


def _full_pipeline_status() -> dict:
    t = "2025-01-02T03:04:05Z"
    return {
        "observedGeneration": 1,
        "conditions": [
            {"type": "Ready", "status": "True", "reason": "Succeeded",
             "message": f"published main@sha1:{SHA}", "lastTransitionTime": t,
             "observedGeneration": 1},
            {"type": "Reconciling", "status": "True", "reason": "Progressing",
             "message": "building", "lastTransitionTime": t, "observedGeneration": 1},
        ],
        "source": {"revision": f"main@sha1:{SHA}", "commit": SHA,
                   "url": "https://git.example.com/ml/churn.git", "fetchedAt": t,
                   "committedAt": t},
        "definition": {"pipelineName": "churn", "digest": "sha256:" + "ab" * 32,
                       "uri": "s3://ml-artifacts/stepflow/churn/.stepflow/definitions/x.json",
                       "steps": 3, "compiledAt": t, "revision": f"main@sha1:{SHA}",
                       "uploadedFiles": 7, "uploadedBytes": 123456},
        "lastBuild": {"revision": f"main@sha1:{SHA}", "startedAt": t, "finishedAt": t,
                      "durationSeconds": 1.25, "reason": "SyntaxError",
                      "message": "invalid syntax", "file": "pipelines/churn.py", "line": 12,
                      "kind": "User"},
        "lastExecution": {"name": "churn-4f1c2a9-1", "phase": "Succeeded", "startedAt": t,
                          "finishedAt": t, "revision": f"main@sha1:{SHA}",
                          "definitionDigest": "sha256:" + "ab" * 32},
        "steps": [
            {"name": "preprocess", "type": "Training", "phase": "Succeeded", "attempts": 1,
             "startedAt": t, "finishedAt": t,
             "resultUri": "s3://ml-artifacts/stepflow/churn/e1/preprocess/results"},
            {"name": "train", "type": "Training", "phase": "Failed", "attempts": 2,
             "startedAt": t, "finishedAt": t, "failureReason": "ValueError: bad"},
            {"name": "register", "type": "Training", "phase": "Skipped", "attempts": 0,
             "skipReason": "condition 'gate' evaluated to false, so its IfSteps do not run"},
        ],
        "summary": {"revision": SHA[:7], "steps": "2/3"},
        "lastHandledReconcileAt": "2025-01-02T03:04:00Z",
        "triggered": {"digest": "sha256:" + "ab" * 32, "parameters": {"Epochs": 3}},
        "lastScheduleTime": t,
        "nextScheduleTime": t,
        "kopf": {"progress": {"anything": {"retries": 1}}},
    }


def _full_execution_status() -> dict:
    t = "2025-01-02T03:04:05Z"
    return {
        "observedGeneration": 1,
        "conditions": [{"type": "Ready", "status": "False", "reason": "StepFailed",
                        "message": "train failed", "lastTransitionTime": t,
                        "observedGeneration": 1}],
        "phase": "Failed", "executionId": "e1", "pipelineName": "churn", "revision": f"main@sha1:{SHA}",
        "executionArn": "arn:aws:sagemaker:us-east-1:123456789012:pipeline/churn/execution/abc123def456",
        "definitionDigest": "sha256:" + "cd" * 32,
        "definitionUri": "s3://ml-artifacts/stepflow/churn/.stepflow/definitions/y.json",
        "startedAt": t, "finishedAt": "2025-01-02T03:05:17Z",
        "failureReason": "StepFailed", "message": "step train failed: ValueError: bad",
        "parameters": {"epochs": 3, "name": "x"},
        "steps": [{"name": "train", "type": "Training", "phase": "Failed", "attempts": 2,
                   "startedAt": t, "finishedAt": t, "failureReason": "ValueError: bad",
                   "resultUri": "s3://x/y"},
                  {"name": "register", "type": "Training", "phase": "Skipped", "attempts": 0,
                   "skipReason": "it depends on 'train', which failed"}],
        "summary": {"steps": "0/1", "durationSeconds": 72.0, "duration": "1m12s",
                    "revision": SHA[:7]},
        "kopf": {"dummy": "x"},
    }


def _schema_paths(schema: dict, prefix: str = "") -> set[str]:
    """Every property path a schema declares (array items as ``[]``)."""
    paths = set()
    for name, sub in schema.get("properties", {}).items():
        path = f"{prefix}.{name}" if prefix else name
        paths.add(path)
        paths |= _schema_paths(sub, path)
    if "items" in schema:
        paths |= _schema_paths(schema["items"], prefix + "[]")
    return paths


def _value_paths(value, prefix: str = "", opaque: frozenset = frozenset()) -> set[str]:
    paths = set()
    if isinstance(value, dict) and prefix not in opaque:
        for name, sub in value.items():
            path = f"{prefix}.{name}" if prefix else name
            paths.add(path)
            paths |= _value_paths(sub, path, opaque)
    elif isinstance(value, list):
        for item in value:
            paths |= _value_paths(item, prefix + "[]", opaque)
    return paths


@pytest.mark.parametrize("crd_file, status", [
    ("pipelines.stepflow.dev.yaml", _full_pipeline_status()),
    ("pipelineexecutions.stepflow.dev.yaml", _full_execution_status()),
])
def test_status_samples_cover_every_declared_field(crd_file, status):
    """Keeps the round-trip test below honest: its samples use every field the CRDs declare."""
    crd = yaml.safe_load((CRDS / crd_file).read_text())
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]
    opaque = frozenset({"kopf", "parameters", "triggered.parameters"})
    assert _value_paths(status, opaque=opaque) == _schema_paths(schema)


def test_status_subresource_keeps_every_field_and_prunes_unknown_ones(kube):
    ns = _ns(kube)
    _apply(kube, ns, _pipeline())
    status = _full_pipeline_status()
    _patch_status(kube, ns, "pipeline", "churn", {**status, "undeclared": {"x": 1}})
    got = _get(kube, ns, "pipeline", "churn")
    assert got["status"] == status  # everything kept, and the undeclared key pruned
    assert got["metadata"]["generation"] == 1  # status writes do not bump the generation

    _apply(kube, ns, {"apiVersion": "stepflow.dev/v1alpha1", "kind": "PipelineExecution",
                      "metadata": {"name": "churn-1"},
                      "spec": {"pipelineRef": {"name": "churn"}, "revision": SHA,
                               "parameters": {"epochs": 5}}})
    status = _full_execution_status()
    _patch_status(kube, ns, "pipelineexecution", "churn-1", status)
    assert _get(kube, ns, "pipelineexecution", "churn-1")["status"] == status


def test_status_patch_with_a_bad_timestamp_is_refused(kube):
    """Timestamps must be RFC 3339 with a zone (what conditions.now() writes)."""
    ns = _ns(kube)
    _apply(kube, ns, _pipeline())
    proc = kube.kubectl("-n", ns, "patch", "pipeline", "churn", "--subresource=status",
                        "--type=merge", "-p",
                        json.dumps({"status": {"source": {"fetchedAt": "yesterday"}}}),
                        check=False)
    assert proc.returncode != 0
    assert "status.source.fetchedAt" in proc.stderr


def test_execution_spec_is_immutable(kube):
    ns = _ns(kube)
    _apply(kube, ns, {"apiVersion": "stepflow.dev/v1alpha1", "kind": "PipelineExecution",
                      "metadata": {"name": "run-1"}, "spec": {"pipelineRef": {"name": "churn"}}})
    proc = kube.kubectl("-n", ns, "patch", "sfx", "run-1", "--type=merge", "-p",
                        json.dumps({"spec": {"parameters": {"epochs": 9}}}), check=False)
    assert proc.returncode != 0
    assert "spec cannot change" in proc.stderr
    proc = _apply(kube, ns, {"apiVersion": "stepflow.dev/v1alpha1", "kind": "PipelineExecution",
                             "metadata": {"name": "run-2"}, "spec": {}}, check=False)
    assert proc.returncode != 0 and "spec.pipelineRef: Required value" in proc.stderr


def _table(text: str) -> tuple[list[str], list[list[str]]]:
    """Split kubectl's table by the header's column starts (columns are 3+ spaces apart)."""
    lines = text.rstrip("\n").splitlines()
    names = re.split(r"\s{2,}", lines[0].strip())
    starts = [m.start() for m in re.finditer(r"(?:^|(?<=\s{2}))\S", lines[0])]
    assert len(starts) == len(names), lines[0]
    bounds = list(zip(starts, starts[1:] + [None], strict=False))
    return names, [[line[a:b].strip() for a, b in bounds] for line in lines[1:]]


def test_printer_columns(kube):
    ns = _ns(kube)
    _apply(kube, ns, _pipeline())
    _patch_status(kube, ns, "pipeline", "churn", _full_pipeline_status())
    header, rows = _table(kube.kubectl("-n", ns, "get", "pipelines").stdout)
    assert header == ["NAME", "REVISION", "READY", "PHASE", "STEPS", "LAST RUN", "AGE"]
    assert rows[0][:5] == ["churn", SHA[:7], "True", "Succeeded", "2/3"]
    assert rows[0][5].endswith(("d", "y"))  # an age: the sample ran in January 2025

    wide = kube.kubectl("-n", ns, "get", "pipelines", "-o", "wide").stdout
    assert "STATUS" in wide.splitlines()[0] and f"published main@sha1:{SHA}" in wide

    _apply(kube, ns, {"apiVersion": "stepflow.dev/v1alpha1", "kind": "PipelineExecution",
                      "metadata": {"name": "churn-1"}, "spec": {"pipelineRef": {"name": "churn"}}})
    _patch_status(kube, ns, "pipelineexecution", "churn-1", _full_execution_status())
    header, rows = _table(kube.kubectl("-n", ns, "get", "pipelineexecutions").stdout)
    assert header == ["NAME", "PIPELINE", "PHASE", "STEPS", "STARTED", "DURATION", "AGE"]
    assert rows[0][:4] == ["churn-1", "churn", "Failed", "0/1"]
    assert rows[0][5] == "1m12s"
