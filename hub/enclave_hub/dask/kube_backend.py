"""The gateway's backend on Kubernetes: dask-gateway's KubeBackend under the projects' policy.

A cluster is a DaskCluster object in the release's namespace, which dask-gateway's controller
turns into a scheduler pod and worker pods. Everything Enclave asks of those pods is in the
object's configuration (`cluster_pods.cluster_settings`); beside the object, the cluster's own
NetworkPolicy lets its pods reach one another. The limits, lifetimes and audit events are
those of one machine (`policy.py`); a stop is recorded when the cluster is seen to stop,
whoever stopped it (the session's end, its owner, its idle timeout, a failure).

The backend watches DaskCluster objects of its own namespace only, so its role at the
Kubernetes API is namespaced. No HTTP route leads to a scheduler's dashboard; the dashboard
is served on the gateway's API to the cluster's own session (`dashboard.py`).
"""

from __future__ import annotations

import asyncio
from collections import defaultdict

from dask_gateway_server import models
from dask_gateway_server.backends.base import Backend
from dask_gateway_server.backends.kubernetes import KubeBackend
from dask_gateway_server.backends.kubernetes.utils import Informer
from dask_gateway_server.utils import Flag
from dask_gateway_server.workqueue import WorkQueue
from kubernetes_asyncio import client, config

from .cluster_pods import cluster_network_policy, cluster_settings
from .dashboard import add_dashboard_route
from .identity import Principal
from .policy import ClusterView, ProjectPolicy

GROUP = "gateway.dask.org"
PLURAL = "daskclusters"


class PodBackend(ProjectPolicy, KubeBackend):
    """Clusters as pods that dask-gateway's controller makes, within the projects' limits."""

    async def setup(self, app) -> None:
        # KubeBackend's own set-up, with the informer on this namespace only.
        await Backend.setup(self, app)
        add_dashboard_route(app)
        try:
            config.load_incluster_config()
        except config.ConfigException:
            await config.load_kube_config()
        self.api_client = client.ApiClient()
        self.core_client = client.CoreV1Api(api_client=self.api_client)
        self.custom_client = client.CustomObjectsApi(api_client=self.api_client)
        self.network_client = client.NetworkingV1Api(api_client=self.api_client)
        self.cluster_waiters = defaultdict(Flag)
        self.clusters = {}
        self.username_to_clusters = defaultdict(dict)
        self.queue = WorkQueue()
        self.informer = Informer(
            parent=self,
            name="cluster",
            client=self.custom_client,
            method="list_namespaced_custom_object",
            method_kwargs={
                "group": GROUP,
                "version": self.crd_version,
                "namespace": self.namespace,
                "plural": PLURAL,
                "label_selector": self.label_selector,
            },
            on_update=self.on_cluster_event,
            on_delete=self.on_cluster_event,
        )
        await self.informer.start()
        self.sync_task = asyncio.ensure_future(self.sync_clusters_loop())
        self.start_policy()

    async def cleanup(self) -> None:
        await self.stop_policy()
        await super().cleanup()

    @property
    def namespace(self) -> str:
        return self.site.kubernetes.namespace

    # -- the policy's view --------------------------------------------------------------------

    def policy_clusters(self) -> list[ClusterView]:
        return [
            ClusterView(
                name=cluster.name,
                principal=Principal.parse(cluster.username),
                config=cluster.config,
                workers=(self.informer.get(cluster.name) or {}).get("spec", {}).get("replicas", 0),
                start_time=cluster.start_time,
            )
            for cluster in self.clusters.values()
            if cluster.status <= models.ClusterStatus.RUNNING
        ]

    # -- clusters -----------------------------------------------------------------------------

    def make_cluster_object(self, username, options, cluster_config) -> dict:
        obj = super().make_cluster_object(username, options, cluster_config)
        principal, project = self.project_of(username)
        obj["spec"]["replicas"] = options["workers"]  # asked for by its scheduler too
        spec_config = obj["spec"]["config"]
        spec_config.update(
            cluster_settings(
                self.site.kubernetes,
                principal.project,
                principal.user,
                tuple(sorted(project.datasets)),
                spec_config,
            )
        )
        return obj

    async def start_cluster(self, user, cluster_options) -> str:
        principal, _ = self.project_of(user.name)
        options, cluster_config = await self.process_cluster_options(user, cluster_options)
        self.check_start(user.name, options, cluster_config.to_dict())
        obj = self.make_cluster_object(user.name, options, cluster_config)
        name = obj["metadata"]["name"]
        cluster_name = f"{self.namespace}.{name}"
        await self.record_start(cluster_name, principal)
        self.log.info("Creating cluster %s for %s", cluster_name, user.name)
        created = await self.custom_client.create_namespaced_custom_object(
            GROUP, self.crd_version, self.namespace, PLURAL, obj
        )
        await self.network_client.create_namespaced_network_policy(
            self.namespace, cluster_network_policy(name, self.gateway_instance, created)
        )
        return cluster_name

    async def sync_cluster(self, cluster_name: str) -> None:
        before = self.clusters.get(cluster_name)
        await super().sync_cluster(cluster_name)
        after = self.clusters.get(cluster_name)
        stopped = models.ClusterStatus.STOPPED
        ended = after is None or after.status >= stopped
        if before is not None and before.status < stopped and ended:
            failed = after is not None and after.status == models.ClusterStatus.FAILED
            await self.record_stop(cluster_name, before.username, failed)

    def dashboard_of(self, cluster_name: str):
        """The cluster and where its dashboard is, or None while it has no address."""
        cluster = self.clusters.get(cluster_name)
        if cluster is None or not cluster.dashboard_address:
            return None
        return cluster, cluster.dashboard_address
