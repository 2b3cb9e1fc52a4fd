"""The Kubernetes API client, in memory: the one thing mocked where Enclave's gateway runs
without a cluster.

`install` replaces kubernetes_asyncio's CoreV1Api, CustomObjectsApi and NetworkingV1Api with
classes that keep objects in a `Cluster`, answer lists and watches as the API server does (the
watch is a stream of JSON lines), and give each created object a uid. The kubeconfig names an
address where nothing listens (kube_sessions.no_cluster): nothing else is ever called.
"""

from __future__ import annotations

import asyncio
import copy
import json
import uuid
from dataclasses import dataclass, field

from kubernetes_asyncio import client

from kube_sessions import no_cluster


@dataclass
class Cluster:
    """The objects the API server holds, by kind, and who watches DaskClusters."""

    custom: dict[str, dict] = field(default_factory=dict)  # "namespace.name" -> DaskCluster
    secrets: dict[str, client.V1Secret] = field(default_factory=dict)
    network_policies: list[dict] = field(default_factory=list)
    watchers: list[asyncio.Queue] = field(default_factory=list)
    version: int = 0

    def put(self, obj: dict, event: str) -> dict:
        self.version += 1
        obj["metadata"]["resourceVersion"] = str(self.version)
        key = f"{obj['metadata']['namespace']}.{obj['metadata']['name']}"
        self.custom[key] = obj
        for queue in self.watchers:
            queue.put_nowait({"type": event, "object": copy.deepcopy(obj)})
        return copy.deepcopy(obj)

    def set_status(self, key: str, status: dict) -> None:
        """What dask-gateway's controller would write as it makes the cluster's pods."""
        obj = copy.deepcopy(self.custom[key])
        obj["status"] = status
        self.put(obj, "MODIFIED")


class _Stream:
    """A watch's response: one JSON line per event, until the watch is dropped."""

    def __init__(self, queue: asyncio.Queue):
        self.queue = queue
        self.content = self

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        return False

    async def readline(self) -> bytes:
        return (json.dumps(await self.queue.get()) + "\n").encode()


class _Api:
    cluster: Cluster

    def __init__(self, api_client=None):
        self.api_client = api_client


class CustomObjects(_Api):
    async def list_namespaced_custom_object(
        self, group, version, namespace, plural, watch=False, **kwargs
    ):
        if watch:
            queue = asyncio.Queue()
            self.cluster.watchers.append(queue)
            return _Stream(queue)
        items = [o for o in self.cluster.custom.values() if o["metadata"]["namespace"] == namespace]
        return {
            "items": copy.deepcopy(items),
            "metadata": {"resourceVersion": str(self.cluster.version)},
        }

    async def create_namespaced_custom_object(self, group, version, namespace, plural, body):
        obj = copy.deepcopy(body)
        obj["metadata"].update(
            namespace=namespace, uid=str(uuid.uuid4()), creationTimestamp="2026-01-01T00:00:00Z"
        )
        return self.cluster.put(obj, "ADDED")

    async def patch_namespaced_custom_object(self, group, version, namespace, plural, name, body):
        obj = copy.deepcopy(self.cluster.custom[f"{namespace}.{name}"])
        for patch in body:
            *path, last = patch["path"].strip("/").split("/")
            target = obj
            for part in path:
                target = target.setdefault(part, {})
            target[last] = patch["value"]
        return self.cluster.put(obj, "MODIFIED")


class CoreV1(_Api):
    async def read_namespaced_secret(self, name, namespace):
        return self.cluster.secrets[f"{namespace}.{name}"]


class Networking(_Api):
    async def create_namespaced_network_policy(self, namespace, body):
        self.cluster.network_policies.append({**body, "namespace": namespace})
        return body


def install(folder, monkeypatch) -> Cluster:
    """Put an in-memory API server behind kubernetes_asyncio's clients; return its objects."""
    no_cluster(folder, monkeypatch)
    cluster = Cluster()
    for name, api in (
        ("CustomObjectsApi", CustomObjects),
        ("CoreV1Api", CoreV1),
        ("NetworkingV1Api", Networking),
    ):
        monkeypatch.setattr(client, name, type(name, (api,), {"cluster": cluster}))
    return cluster
