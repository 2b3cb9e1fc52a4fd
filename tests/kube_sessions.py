"""Session pods as Enclave's KubeSpawner builds them, without a cluster.

There is no Kubernetes cluster here, so the one thing mocked is the cluster: KubeSpawner reads a
kubeconfig naming an address where nothing listens, and no request is ever made (building a pod
does not call the API). Everything else is real: the site configuration, the project registry,
Enclave's spawner configuration, KubeSpawner's profile and pod building, and the hook.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace

from kubernetes_asyncio.client import ApiClient
from kubernetes_asyncio.config import kube_config
from traitlets.config import Config

from enclave_hub.core.registry import Registry
from enclave_hub.core.site_config import SiteConfig
from enclave_hub.kubernetes.hub_config import configure_kube_spawner
from enclave_hub.kubernetes.spawner import EnclaveKubeSpawner

KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters: [{name: none, cluster: {server: "https://127.0.0.1:9"}}]
users: [{name: none, user: {token: not-a-token}}]
contexts: [{name: none, context: {cluster: none, user: none, namespace: tre}}]
current-context: none
"""
# What Zero to JupyterHub's own configuration gives every user pod (its jupyterhub_config.py,
# and singleuser.extraLabels by default).
ZERO_TO_JUPYTERHUB_LABELS = {"app": "jupyterhub", "release": "enclave"}
ZERO_TO_JUPYTERHUB_EXTRA_LABELS = {"hub.jupyter.org/network-access-hub": "true"}


def no_cluster(folder: Path, monkeypatch) -> None:
    """Point KubeSpawner's client at a cluster that is not there."""
    path = folder / "kubeconfig"
    path.write_text(KUBECONFIG)
    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(path))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)


def seeded_registry(site: SiteConfig, folder: Path) -> Registry:
    """The site's seed projects in a registry of their own (SQLite), datasets on disk."""
    data_root = folder / "data"
    for project in site.projects:
        for dataset in project.datasets:
            (data_root / dataset).mkdir(parents=True, exist_ok=True)
    registry = Registry(
        f"sqlite:///{folder / 'registry.sqlite'}",
        data_root,
        site.sessions.profiles.keys(),
        lambda event: None,
    )
    registry.seed(site.projects)
    return registry


def kube_spawner_config(site: SiteConfig, registry: Registry, folder: Path) -> Config:
    """The hub's configuration of session pods, as `kubernetes.hub_config.configure` makes it."""
    config = Config()
    config.KubeSpawner.common_labels = dict(ZERO_TO_JUPYTERHUB_LABELS)
    config.KubeSpawner.extra_labels = dict(ZERO_TO_JUPYTERHUB_EXTRA_LABELS)
    configure_kube_spawner(
        config.EnclaveKubeSpawner, site, registry, audit=None, hub_state_dir=folder
    )
    return config


def kube_spawner(config: Config, user: str, project: str) -> EnclaveKubeSpawner:
    """A spawner for `user`'s session of `project` (made in a running event loop)."""
    hub = SimpleNamespace(
        public_host="tre.example.ac.uk",
        url="http://hub:8081/hub/",
        base_url="/hub/",
        api_url="http://hub:8081/hub/api",
    )
    owner = SimpleNamespace(name=user, id=1, url=f"/user/{user}/", escaped_name=user)
    server = SimpleNamespace(name=project, id=1, server=None, user_options={})
    return EnclaveKubeSpawner(config=config, user=owner, hub=hub, orm_spawner=server, _mock=True)


def session_pod(config: Config, user: str, project: str) -> dict:
    """The pod KubeSpawner would create (profile, manifest, then the hook, as in its _start),
    as the manifest it would send."""

    async def build() -> dict:
        spawner = kube_spawner(config, user, project)
        await spawner.load_user_options()
        pod = await spawner.get_pod_manifest()
        pod = spawner.modify_pod_hook(spawner, pod)
        async with ApiClient() as client:
            return {"apiVersion": "v1", "kind": "Pod", **client.sanitize_for_serialization(pod)}

    return asyncio.run(build())
