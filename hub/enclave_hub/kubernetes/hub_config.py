"""JupyterHub's configuration under Zero to JupyterHub, from the same site configuration.

The chart's `hub.extraConfig` calls `configure` after Zero to JupyterHub's own configuration:
the hub's database, proxy, cookie secret and bind addresses stay Zero to JupyterHub's; the
sign-in, the services, the roles and the spawner are Enclave's, as on one machine.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..core.project_groups import ProjectGroups
from ..core.site_config import SiteConfig, SiteConfigError
from ..core.site_secrets import load_secrets
from ..hub_config import configure_enclave, configure_project_sessions, seeded_registry
from .spawner import EnclaveKubeSpawner

# The hub's own volume under Zero to JupyterHub (its database lives there too).
HUB_STATE_DIR = Path("/srv/jupyterhub")


def configure(c: Any, site: SiteConfig, hub_state_dir: Path = HUB_STATE_DIR) -> None:
    """Fill JupyterHub's traitlets config `c` for a deployment on Kubernetes."""
    kube = site.kubernetes
    if kube is None:
        raise SiteConfigError("kubernetes: the site configuration has no kubernetes section")
    secrets = load_secrets(site.state_dir)
    registry = seeded_registry(site)
    audit = configure_enclave(c, site, secrets, registry)

    c.JupyterHub.spawner_class = EnclaveKubeSpawner
    configure_kube_spawner(c.EnclaveKubeSpawner, site, registry, audit, hub_state_dir)


def configure_kube_spawner(
    spawner: Any, site: SiteConfig, registry, audit, hub_state_dir: Path = HUB_STATE_DIR
) -> None:
    """EnclaveKubeSpawner's settings: sessions of projects, as pods."""
    kube = site.kubernetes
    configure_project_sessions(spawner, site, registry, audit)
    spawner.kube = kube
    spawner.project_groups = ProjectGroups(hub_state_dir, site.sessions.gid_base)
    spawner.workspace_root = str(site.sessions.workspace_root)
    spawner.uid = kube.session_uid
    # Homes and shared folders live in the workspace claim, not in a claim per user.
    spawner.storage_pvc_ensure = False
    spawner.volumes = []
    spawner.volume_mounts = []
    spawner.delete_stopped_pods = True
