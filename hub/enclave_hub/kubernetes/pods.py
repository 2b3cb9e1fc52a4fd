"""What a session's pod is allowed to be: its mounts, its labels and its security settings.

`confine_session_pod` is applied to the pod KubeSpawner built, as its `modify_pod_hook`, which
runs after profiles and every other setting: whatever they said, the pod leaves with the
project's folders, the project's datasets read-only, the site's DNS resolver, and no way to
gain privileges.
"""

from __future__ import annotations

from dataclasses import dataclass

from kubernetes_asyncio.client import models as k8s

from ..core.kube_pods import project_labels
from ..core.mounts import DATA_MOUNT, PROJECT_MOUNT, home_inside, home_subpath, shared_subpath

WORKSPACE_VOLUME = "enclave-workspace"
DATA_VOLUME = "enclave-data"
TMP_VOLUME = "enclave-tmp"
RESERVED_VOLUMES = frozenset({WORKSPACE_VOLUME, DATA_VOLUME, TMP_VOLUME})
# Nothing else may be mounted at or under these: a session sees only its own project's folders.
RESERVED_PATHS = ("/home", PROJECT_MOUNT, DATA_MOUNT, "/tmp")
NOTEBOOK_CONTAINER = "notebook"


@dataclass(frozen=True)
class SessionMounts:
    """Where one session's folders come from: one claim of workspaces, one of datasets."""

    user: str
    project: str
    datasets: tuple[str, ...]
    workspace_claim: str
    data_claim: str
    uid: int
    gid: int

    @property
    def home(self) -> str:
        return home_inside(self.user)

    def volume_mounts(self) -> list[k8s.V1VolumeMount]:
        workspace = [
            k8s.V1VolumeMount(
                name=WORKSPACE_VOLUME,
                mount_path=self.home,
                sub_path=home_subpath(self.project, self.user),
            ),
            k8s.V1VolumeMount(
                name=WORKSPACE_VOLUME,
                mount_path=PROJECT_MOUNT,
                sub_path=shared_subpath(self.project),
            ),
            k8s.V1VolumeMount(name=TMP_VOLUME, mount_path="/tmp"),
        ]
        data = [
            k8s.V1VolumeMount(
                name=DATA_VOLUME,
                mount_path=f"{DATA_MOUNT}/{dataset}",
                sub_path=dataset,
                read_only=True,
            )
            for dataset in self.datasets
        ]
        return workspace + data

    def volumes(self) -> list[k8s.V1Volume]:
        volumes = [
            k8s.V1Volume(
                name=WORKSPACE_VOLUME,
                persistent_volume_claim=k8s.V1PersistentVolumeClaimVolumeSource(
                    claim_name=self.workspace_claim
                ),
            ),
            k8s.V1Volume(name=TMP_VOLUME, empty_dir=k8s.V1EmptyDirVolumeSource()),
        ]
        if self.datasets:
            volumes.append(
                k8s.V1Volume(
                    name=DATA_VOLUME,
                    persistent_volume_claim=k8s.V1PersistentVolumeClaimVolumeSource(
                        claim_name=self.data_claim, read_only=True
                    ),
                )
            )
        return volumes


def _reserved(path: str) -> bool:
    path = path.rstrip("/") or "/"
    return any(path == top or path.startswith(f"{top}/") for top in RESERVED_PATHS)


def unprivileged() -> k8s.V1SecurityContext:
    """A container that runs as no root, can gain nothing, and cannot write its image."""
    return k8s.V1SecurityContext(
        run_as_non_root=True,
        allow_privilege_escalation=False,
        privileged=False,
        read_only_root_filesystem=True,
        capabilities=k8s.V1Capabilities(drop=["ALL"]),
        seccomp_profile=k8s.V1SeccompProfile(type="RuntimeDefault"),
    )


def _keep_mount(mount: k8s.V1VolumeMount, kept_volumes: set[str]) -> bool:
    return mount.name in kept_volumes and not _reserved(mount.mount_path)


def pod_dns_config(dns: dict) -> k8s.V1PodDNSConfig:
    """`kube_pods.pod_dns`'s `dnsConfig` as KubeSpawner's model."""
    config = dns["dnsConfig"]
    return k8s.V1PodDNSConfig(
        nameservers=config["nameservers"],
        searches=config["searches"],
        options=[k8s.V1PodDNSConfigOption(**option) for option in config["options"]],
    )


def confine_session_pod(pod: k8s.V1Pod, mounts: SessionMounts, dns: dict) -> k8s.V1Pod:
    """Make `pod` a session of `mounts.project` for `mounts.user`, whatever it held before;
    `dns` is `kube_pods.pod_dns` (empty: the cluster's DNS)."""
    spec = pod.spec
    # No node paths, and none of the volumes that are Enclave's to define.
    volumes = [
        volume
        for volume in spec.volumes or []
        if volume.host_path is None and volume.name not in RESERVED_VOLUMES
    ]
    kept = {volume.name for volume in volumes}
    spec.volumes = volumes + mounts.volumes()
    for container in [*(spec.init_containers or []), *spec.containers]:
        container.volume_mounts = [
            mount for mount in container.volume_mounts or [] if _keep_mount(mount, kept)
        ]
        container.security_context = unprivileged()
    notebook = next((c for c in spec.containers if c.name == NOTEBOOK_CONTAINER), None)
    if notebook is None:
        raise ValueError(f"the session pod has no container named '{NOTEBOOK_CONTAINER}'")
    notebook.volume_mounts += mounts.volume_mounts()
    notebook.working_dir = mounts.home  # Jupyter serves the folder it starts in

    spec.automount_service_account_token = False
    spec.enable_service_links = False
    spec.host_network = spec.host_pid = spec.host_ipc = None
    spec.dns_policy = dns.get("dnsPolicy")
    spec.dns_config = pod_dns_config(dns) if dns else None
    spec.security_context = k8s.V1PodSecurityContext(
        run_as_non_root=True,
        run_as_user=mounts.uid,
        run_as_group=mounts.gid,
        fs_group=mounts.gid,
        seccomp_profile=k8s.V1SeccompProfile(type="RuntimeDefault"),
    )
    pod.metadata.labels = {
        **(pod.metadata.labels or {}),
        **project_labels(mounts.project, mounts.user),
    }
    return pod
