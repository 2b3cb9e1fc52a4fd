"""What a Dask cluster is on Kubernetes, beside what dask-gateway's controller makes of it.

The controller builds each scheduler and worker pod from the cluster's configuration (the
DaskCluster object's `spec.config`), merging in its `*_extra_pod_config` and
`*_extra_container_config`; `cluster_settings` is what Enclave puts there, whatever the
deployment's values said: the project's shared folder and its datasets read-only, nothing
that runs as root or gains privileges, no service account token, the site's DNS resolver,
and the project's and user's labels. `cluster_network_policy` is the cluster's own
NetworkPolicy, owned by its DaskCluster: its scheduler and workers reach one another and no
other cluster's pods.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..core.kube_pods import pod_dns, project_labels
from ..core.mounts import DATA_MOUNT, PROJECT_MOUNT, shared_subpath
from ..core.site_config import KubernetesSettings
from . import scheduler_start

INSTANCE_LABEL = "gateway.dask.org/instance"
CLUSTER_LABEL = "gateway.dask.org/cluster"
WORKSPACE_VOLUME = "enclave-workspace"
DATA_VOLUME = "enclave-data"
TMP_VOLUME = "enclave-tmp"
# Where Dask keeps its files: the one writable place besides the project's folder.
SCRATCH = "/tmp"
CONTAINER_SECURITY = {
    "runAsNonRoot": True,
    "allowPrivilegeEscalation": False,
    "privileged": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


def _volumes(kube: KubernetesSettings, datasets: tuple[str, ...]) -> list[dict]:
    volumes = [
        {"name": WORKSPACE_VOLUME, "persistentVolumeClaim": {"claimName": kube.workspace_claim}},
        {"name": TMP_VOLUME, "emptyDir": {}},
    ]
    if datasets:
        volumes.append(
            {
                "name": DATA_VOLUME,
                "persistentVolumeClaim": {"claimName": kube.data_claim, "readOnly": True},
            }
        )
    return volumes


def _mounts(project: str, datasets: tuple[str, ...]) -> list[dict]:
    return [
        {"name": WORKSPACE_VOLUME, "mountPath": PROJECT_MOUNT, "subPath": shared_subpath(project)},
        {"name": TMP_VOLUME, "mountPath": SCRATCH},
        *(
            {
                "name": DATA_VOLUME,
                "mountPath": f"{DATA_MOUNT}/{dataset}",
                "subPath": dataset,
                "readOnly": True,
            }
            for dataset in datasets
        ),
    ]


def cluster_settings(
    kube: KubernetesSettings,
    project: str,
    user: str,
    datasets: tuple[str, ...],
    config: Mapping,
) -> dict:
    """The configuration keys Enclave sets on a cluster of `user`'s session in `project`,
    laid over the deployment's own (`config`, KubeClusterConfig's as a dict)."""
    pod = {
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "hostNetwork": False,
        "hostPID": False,
        "hostIPC": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": kube.session_uid,
            "runAsGroup": kube.session_uid,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumes": _volumes(kube, datasets),
        **pod_dns(kube),
    }
    container = {"securityContext": CONTAINER_SECURITY, "volumeMounts": _mounts(project, datasets)}
    labels = project_labels(project, user)
    settings = {
        "scheduler_cmd": [*config["scheduler_cmd"], "--preload", scheduler_start.PRELOAD],
        "environment": {
            **config["environment"],
            "HOME": SCRATCH,
            "DASK_TEMPORARY_DIRECTORY": SCRATCH,
            "ENCLAVE_DATA": DATA_MOUNT,
        },
    }
    for role in ("scheduler", "worker"):
        settings[f"{role}_extra_pod_config"] = {**config[f"{role}_extra_pod_config"], **pod}
        settings[f"{role}_extra_container_config"] = {
            **config[f"{role}_extra_container_config"],
            **container,
        }
        settings[f"{role}_extra_pod_labels"] = {**config[f"{role}_extra_pod_labels"], **labels}
    return settings


def cluster_network_policy(name: str, instance: str, owner: Mapping) -> dict:
    """The NetworkPolicy of the cluster `name` (its DaskCluster's name), owned by `owner` (the
    DaskCluster object): its pods with one another, in and out, on any port."""
    members = {"matchLabels": {INSTANCE_LABEL: instance, CLUSTER_LABEL: name}}
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {
            "name": f"dask-{name}",
            "labels": {INSTANCE_LABEL: instance, CLUSTER_LABEL: name},
            "ownerReferences": [
                {
                    "apiVersion": owner["apiVersion"],
                    "kind": owner["kind"],
                    "name": owner["metadata"]["name"],
                    "uid": owner["metadata"]["uid"],
                }
            ],
        },
        "spec": {
            "podSelector": members,
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [{"from": [{"podSelector": members}]}],
            "egress": [{"to": [{"podSelector": members}]}],
        },
    }
