"""The few API calls the handlers make themselves, with the official client, off the loop.

kopf watches and patches through its own client; what it does not do for us is here:
reading a Secret, creating, listing and deleting ``PipelineExecution`` resources, and
patching ``.status`` from a daemon (kopf applies a daemon's ``patch`` kwarg only when the
daemon function returns, and ours live as long as their resource). Every call is blocking
in the client and runs in a worker thread; the urllib3 pool is sized for those threads.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, cast

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from stepflow.k8s_names import label_value
from stepflow_operator.settings import (
    EXECUTIONS,
    GROUP,
    PIPELINE_LABEL,
    PIPELINES,
    RECEIVERS,
    TRIGGER_ANNOTATION,
    VERSION,
)

MERGE_PATCH = "application/merge-patch+json"


def api_client(pool_size: int) -> client.ApiClient:
    """In-cluster credentials when running in a pod, else the kubeconfig (``$KUBECONFIG``)."""
    configuration = client.Configuration()
    try:
        config.load_incluster_config(client_configuration=configuration)
    except config.ConfigException:
        config.load_kube_config(client_configuration=configuration, persist_config=False)
    configuration.connection_pool_maxsize = pool_size
    return client.ApiClient(configuration)


def _json_object(response: object) -> dict[str, Any]:
    """A custom-objects call's response, which the client types as ``object``: the parsed JSON object."""
    return cast(dict[str, Any], response)


class Kube:
    """Async wrappers; each returns plain dicts (the JSON the API server sent)."""

    def __init__(self, api: client.ApiClient) -> None:
        self.api = api
        self.core = client.CoreV1Api(api)
        self.custom = client.CustomObjectsApi(api)

    async def secret_data(self, namespace: str, name: str) -> dict[str, str] | None:
        """The Secret's ``data`` (base64 values); None when it does not exist."""
        def read() -> dict[str, str] | None:
            try:
                secret = self.core.read_namespaced_secret(name, namespace)
            except ApiException as exc:
                if exc.status == 404:
                    return None
                raise
            # Values are base64 text as read; the model also admits bytes (for writes).
            return cast(dict[str, str], dict(secret.data or {}))
        return await asyncio.to_thread(read)

    async def get(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        def read() -> dict[str, Any] | None:
            try:
                return _json_object(self.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, plural, name))
            except ApiException as exc:
                if exc.status == 404:
                    return None
                raise
        return await asyncio.to_thread(read)

    async def patch_status(self, plural: str, namespace: str, name: str,
                           patch: Mapping[str, Any]) -> dict[str, Any] | None:
        """JSON-merge-patch ``.status``; returns the object as stored, None if it is gone."""
        def send() -> dict[str, Any] | None:
            try:
                return _json_object(self.custom.patch_namespaced_custom_object_status(
                    GROUP, VERSION, namespace, plural, name, {"status": dict(patch)},
                    _content_type=MERGE_PATCH))
            except ApiException as exc:
                if exc.status == 404:
                    return None
                raise
        return await asyncio.to_thread(send)

    async def create_execution(self, owner: Mapping[str, Any], name: str, *, revision: str,
                               parameters: Mapping[str, Any], trigger: str) -> bool:
        """Create the PipelineExecution ``name`` owned by the Pipeline ``owner``.

        Names are deterministic, so a 409 means an earlier reconcile (or operator) already
        created it: fine. Returns True when this call created it.
        """
        meta = owner["metadata"]
        body = {
            "apiVersion": f"{GROUP}/{VERSION}", "kind": "PipelineExecution",
            "metadata": {
                "name": name, "namespace": meta["namespace"],
                "labels": {PIPELINE_LABEL: label_value(meta["name"])},
                "annotations": {TRIGGER_ANNOTATION: trigger},
                "ownerReferences": [{
                    "apiVersion": f"{GROUP}/{VERSION}", "kind": "Pipeline", "name": meta["name"],
                    "uid": meta["uid"], "controller": True, "blockOwnerDeletion": True}],
            },
            "spec": {"pipelineRef": {"name": meta["name"]}, "revision": revision,
                     "parameters": dict(parameters)},
        }

        def create() -> bool:
            try:
                self.custom.create_namespaced_custom_object(GROUP, VERSION, meta["namespace"], EXECUTIONS, body)
            except ApiException as exc:
                if exc.status == 409:
                    return False
                raise
            return True
        return await asyncio.to_thread(create)

    async def list_objects(self, plural: str, namespace: str) -> list[dict[str, Any]]:
        def list_() -> list[dict[str, Any]]:
            return list(_json_object(self.custom.list_namespaced_custom_object(
                GROUP, VERSION, namespace, plural))["items"])
        return await asyncio.to_thread(list_)

    async def annotate(self, plural: str, namespace: str, name: str, annotations: Mapping[str, str]) -> bool:
        """Merge ``annotations`` into the object's; False when it is gone."""
        def send() -> bool:
            try:
                self.custom.patch_namespaced_custom_object(
                    GROUP, VERSION, namespace, plural, name, {"metadata": {"annotations": dict(annotations)}},
                    _content_type=MERGE_PATCH)
            except ApiException as exc:
                if exc.status == 404:
                    return False
                raise
            return True
        return await asyncio.to_thread(send)

    async def executions_of(self, namespace: str, pipeline: str) -> list[dict[str, Any]]:
        """Every PipelineExecution that runs ``pipeline`` (operator-made or by hand), oldest first."""
        def list_() -> list[dict[str, Any]]:
            listed = self.custom.list_namespaced_custom_object(GROUP, VERSION, namespace, EXECUTIONS)
            items = _json_object(listed)["items"]
            return [i for i in items if (i.get("spec") or {}).get("pipelineRef", {}).get("name") == pipeline]
        items = await asyncio.to_thread(list_)
        return sorted(items, key=lambda i: (i["metadata"]["creationTimestamp"], i["metadata"]["name"]))

    async def delete(self, plural: str, namespace: str, name: str) -> None:
        def delete() -> None:
            try:
                self.custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, plural, name)
            except ApiException as exc:
                if exc.status != 404:
                    raise
        await asyncio.to_thread(delete)


def reference(plural: str, namespace: str, name: str, uid: str | None = None) -> dict[str, Any]:
    """A body kopf can post an Event about, for an object we did not receive from kopf."""
    kind = {PIPELINES: "Pipeline", EXECUTIONS: "PipelineExecution", RECEIVERS: "Receiver"}[plural]
    meta: dict[str, Any] = {"name": name, "namespace": namespace}
    if uid:
        meta["uid"] = uid
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": kind, "metadata": meta}
