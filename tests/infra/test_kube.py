"""The local control plane is a real Kubernetes API server: objects, watches, RBAC, CRDs."""

from __future__ import annotations

import base64
import os
import queue
import secrets
import subprocess
import threading

import pytest
import yaml
from kubernetes import client, dynamic, watch
from kubernetes.client.rest import ApiException
from tests.testenv import wait_for


def _ns(kube, prefix: str = "infra") -> str:
    name = f"{prefix}-{secrets.token_hex(4)}"
    client.CoreV1Api(kube.api_client).create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    return name


def test_namespace_secret_configmap_roundtrip(kube):
    core = client.CoreV1Api(kube.api_client)
    ns = _ns(kube)
    assert core.read_namespace(ns).status.phase == "Active"

    core.create_namespaced_secret(ns, client.V1Secret(
        metadata=client.V1ObjectMeta(name="creds", labels={"app": "stepflow"}),
        type="Opaque",
        data={"password": base64.b64encode(b"hunter2\x00\xff").decode()},
        string_data={"username": "alice"},
    ))
    core.create_namespaced_config_map(ns, client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name="settings"),
        data={"s3RootUri": "s3://bucket/stepflow", "multi": "a\nb\n"},
        binary_data={"blob": base64.b64encode(bytes(range(256))).decode()},
    ))

    secret = core.read_namespaced_secret("creds", ns)
    assert base64.b64decode(secret.data["password"]) == b"hunter2\x00\xff"
    # stringData is write-only: the server folds it into data
    assert base64.b64decode(secret.data["username"]) == b"alice"
    assert secret.metadata.labels == {"app": "stepflow"}

    cm = core.read_namespaced_config_map("settings", ns)
    assert cm.data == {"s3RootUri": "s3://bucket/stepflow", "multi": "a\nb\n"}
    assert base64.b64decode(cm.binary_data["blob"]) == bytes(range(256))

    names = {s.metadata.name for s in core.list_namespaced_secret(ns).items}
    assert "creds" in names
    with pytest.raises(ApiException) as err:
        core.read_namespaced_config_map("absent", ns)
    assert err.value.status == 404
    with pytest.raises(ApiException) as err:
        core.create_namespaced_config_map(ns, client.V1ConfigMap(
            metadata=client.V1ObjectMeta(name="settings")))
    assert err.value.status == 409


def test_watch_sees_configmap_update(kube):
    core = client.CoreV1Api(kube.api_client)
    ns = _ns(kube)
    created = core.create_namespaced_config_map(ns, client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name="watched"), data={"round": "0"}))

    events: queue.Queue = queue.Queue()
    w = watch.Watch()
    started = threading.Event()

    def run() -> None:
        try:
            stream = w.stream(core.list_namespaced_config_map, ns,
                              field_selector="metadata.name=watched",
                              resource_version=created.metadata.resource_version,
                              timeout_seconds=30)
            started.set()
            for event in stream:
                events.put((event["type"], event["object"].data))
        except Exception as exc:  # noqa: BLE001 - surfaced through the queue
            events.put(("ERROR", repr(exc)))
        finally:
            started.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert started.wait(10)
    core.patch_namespaced_config_map("watched", ns, {"data": {"round": "1"}})

    while True:
        kind, data = events.get(timeout=15)
        assert kind != "ERROR", data
        if kind == "MODIFIED":
            assert data == {"round": "1"}
            break
    w.stop()
    thread.join(timeout=35)


def test_rbac_is_enforced_for_service_account_tokens(kube):
    """Authorization is RBAC: a fresh service account may do nothing until bound."""
    core = client.CoreV1Api(kube.api_client)
    rbac = client.RbacAuthorizationV1Api(kube.api_client)
    ns = _ns(kube)
    core.create_namespaced_service_account(ns, client.V1ServiceAccount(
        metadata=client.V1ObjectMeta(name="reader")))
    token = core.create_namespaced_service_account_token("reader", ns, client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=3600))).status.token

    cfg = client.Configuration()
    cfg.host = kube.server
    cfg.ssl_ca_cert = kube.ca_file
    cfg.api_key = {"authorization": token}
    cfg.api_key_prefix = {"authorization": "Bearer"}
    with client.ApiClient(cfg) as sa_client:
        sa_core = client.CoreV1Api(sa_client)
        with pytest.raises(ApiException) as err:
            sa_core.list_namespaced_config_map(ns)
        assert err.value.status == 403
        assert f"system:serviceaccount:{ns}:reader" in err.value.body

        rbac.create_namespaced_role(ns, client.V1Role(
            metadata=client.V1ObjectMeta(name="cm-reader"),
            rules=[client.V1PolicyRule(api_groups=[""], resources=["configmaps"],
                                       verbs=["get", "list"])]))
        rbac.create_namespaced_role_binding(ns, client.V1RoleBinding(
            metadata=client.V1ObjectMeta(name="cm-reader"),
            role_ref=client.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="Role",
                                      name="cm-reader"),
            subjects=[client.RbacV1Subject(kind="ServiceAccount", name="reader", namespace=ns)]))

        # the RBAC authorizer reads roles from informers: allowed within moments
        wait_for(lambda: sa_core.list_namespaced_config_map(ns) is not None, 10, 0.05,
                 "the role binding to take effect", ignore=ApiException)
        with pytest.raises(ApiException) as err:
            sa_core.list_namespaced_secret(ns)
        assert err.value.status == 403


CRD_GROUP = "infra.stepflow.test"
CRD = f"""
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.{CRD_GROUP}
spec:
  group: {CRD_GROUP}
  scope: Namespaced
  names: {{plural: widgets, singular: widget, kind: Widget, listKind: WidgetList}}
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {{status: {{}}}}
    additionalPrinterColumns:
    - {{name: Phase, type: string, jsonPath: .status.phase}}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            required: [size]
            properties:
              size: {{type: integer, minimum: 1}}
              color: {{type: string}}
          status:
            type: object
            properties:
              phase: {{type: string}}
              observedGeneration: {{type: integer}}
"""


def test_server_side_apply_crd_and_custom_resource_status(kube):
    kube.kubectl("apply", "--server-side", "--field-manager=infra-test", "-f", "-", input=CRD)
    kube.kubectl("wait", "--for=condition=Established", "--timeout=30s",
                 f"crd/widgets.{CRD_GROUP}", timeout=40)
    ns = _ns(kube)
    try:
        dyn = dynamic.DynamicClient(kube.new_api_client())
        widgets = wait_for(lambda: dyn.resources.get(api_version=f"{CRD_GROUP}/v1", kind="Widget"),
                           10, 0.1, "Widget in discovery", ignore=Exception)
        body = {"apiVersion": f"{CRD_GROUP}/v1", "kind": "Widget",
                "metadata": {"name": "w1", "namespace": ns}, "spec": {"size": 3}}
        applied = widgets.server_side_apply(body=body, name="w1", namespace=ns,
                                            field_manager="infra-test")
        assert applied.spec.size == 3
        assert applied.metadata.generation == 1
        assert any(m.manager == "infra-test" for m in applied.metadata.managedFields)

        # schema validation is real
        with pytest.raises(ApiException) as err:
            widgets.server_side_apply(body={**body, "spec": {"size": 0}}, name="w1",
                                      namespace=ns, field_manager="infra-test")
        assert err.value.status == 422

        # status goes through the status subresource only, and does not bump generation
        objects = client.CustomObjectsApi(kube.api_client)
        objects.patch_namespaced_custom_object_status(
            CRD_GROUP, "v1", ns, "widgets", "w1",
            {"status": {"phase": "Ready", "observedGeneration": 1}})
        got = objects.get_namespaced_custom_object(CRD_GROUP, "v1", ns, "widgets", "w1")
        assert got["status"] == {"phase": "Ready", "observedGeneration": 1}
        assert got["metadata"]["generation"] == 1

        # a status in a main-resource write is ignored
        again = widgets.server_side_apply(
            body={**body, "spec": {"size": 5, "color": "red"}, "status": {"phase": "Bogus"}},
            name="w1", namespace=ns, field_manager="infra-test")
        assert again.metadata.generation == 2
        assert again.spec.color == "red"
        assert again.status.phase == "Ready"

        out = kube.kubectl("get", "widgets", "-n", ns, "-o", "wide").stdout
        assert "w1" in out and "Ready" in out
    finally:
        kube.kubectl("delete", f"crd/widgets.{CRD_GROUP}", "--wait=false", check=False)


def test_kubectl_env_and_identity(kube):
    assert kube.kubectl("get", "--raw", "/readyz").stdout.strip() == "ok"
    # the env dict alone is enough for a child process (no --kubeconfig)
    proc = subprocess.run(["kubectl", "auth", "whoami", "-o", "yaml"],
                          env={**os.environ, **kube.env}, capture_output=True, text=True,
                          timeout=30, check=True)
    who = yaml.safe_load(proc.stdout)
    assert who["status"]["userInfo"]["username"] == "stepflow-admin"
    assert "system:masters" in who["status"]["userInfo"]["groups"]
    assert '"kind":"APIResourceList"' in kube.kubectl("get", "--raw", "/api/v1").stdout


def test_project_crds_are_established(kube):
    """Every CRD under crds/ was applied by the fixture and is Established (none is fine)."""
    ext = client.ApiextensionsV1Api(kube.api_client)
    expected = []
    for f in kube.crd_files():
        for doc in yaml.safe_load_all(f.read_text()):
            if isinstance(doc, dict) and doc.get("kind") == "CustomResourceDefinition":
                expected.append(doc["metadata"]["name"])
    for name in expected:
        crd = ext.read_custom_resource_definition(name)
        conds = {c.type: c.status for c in crd.status.conditions or []}
        assert conds.get("Established") == "True", (name, conds)
    assert sorted(kube.apply_crds()) == sorted(expected)  # idempotent re-apply
