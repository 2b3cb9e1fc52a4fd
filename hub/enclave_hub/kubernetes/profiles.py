"""The site's session profiles as KubeSpawner profiles: resources, GPUs and where pods may run.

A project's sessions get its profile and no other (the registry names it), so a user has no
choice to make; the limits are both requested and enforced, so a session is never throttled
below what its profile promises.
"""

from __future__ import annotations

from typing import Any

from ..core.site_config import KubernetesSettings, Profile

GPU_RESOURCE = "nvidia.com/gpu"


def kubespawner_profile(name: str, profile: Profile, kube: KubernetesSettings) -> dict[str, Any]:
    """One entry of KubeSpawner's `profile_list` for the site profile `name`."""
    override: dict[str, Any] = {
        "image": kube.gpu_session_image if profile.gpus else kube.session_image,
        "image_pull_policy": kube.image_pull_policy,
        "cpu_limit": profile.cpus,
        "cpu_guarantee": profile.cpus,
        "mem_limit": int(profile.memory),
        "mem_guarantee": int(profile.memory),
        "node_selector": dict(profile.node_selector),
        "tolerations": [
            toleration.model_dump(exclude_none=True) for toleration in profile.tolerations
        ],
        "extra_resource_limits": {},
        "extra_resource_guarantees": {},
    }
    if profile.gpus:
        override["extra_resource_limits"] = {GPU_RESOURCE: str(profile.gpus)}
        override["extra_resource_guarantees"] = {GPU_RESOURCE: str(profile.gpus)}
    gpus = f", {profile.gpus} GPU" if profile.gpus else ""
    return {
        "display_name": name,
        "slug": name,
        "description": f"{profile.cpus:g} CPU, {profile.memory.human_readable()}{gpus}",
        "default": True,
        "kubespawner_override": override,
    }
