"""The hub's configuration on one machine: `jupyterhub_config.py` beside this file calls
`configure`. What every Enclave hub has comes from `enclave_hub.hub_config`."""

from __future__ import annotations

from typing import Any

from ..core.project_groups import ProjectGroups
from ..core.site_config import SiteConfig
from ..core.site_secrets import load_secrets, secret_path
from ..hub_config import configure_enclave, configure_project_sessions, seeded_registry
from .hub_files import hub_paths
from .spawner import EnclaveSpawner

SUPERVISOR_SERVICE = "enclave-supervisor"
ROUTE_CHECK_INTERVAL = 10  # seconds


def configure(c: Any, site: SiteConfig) -> None:
    """Fill JupyterHub's traitlets config `c` for this deployment on this machine."""
    secrets = load_secrets(site.state_dir)
    paths = hub_paths(site)
    registry = seeded_registry(site)

    hub = c.JupyterHub
    hub.bind_url = f"http://{site.hub.bind}:{site.hub.port}"
    # Sessions reach the hub, and nothing else of the host, at its address on its own link.
    hub.hub_bind_url = site.hub_url
    hub.db_url = f"sqlite:///{paths['database']}"
    hub.pid_file = str(paths["pid_file"])
    hub.cookie_secret_file = str(secret_path(site.state_dir, "cookie_secret"))
    hub.cleanup_servers = False
    hub.cleanup_proxy = False
    hub.spawner_class = EnclaveSpawner
    c.ConfigurableHTTPProxy.should_start = False
    # The hub checks the proxy's routes at each activity update and puts back what a restarted
    # proxy lost, so users reach their running sessions again within this many seconds.
    hub.last_activity_interval = ROUTE_CHECK_INTERVAL
    c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{site.hub.proxy_api_port}"
    c.ConfigurableHTTPProxy.auth_token = secrets.proxy_token
    c.CryptKeeper.keys = [secrets.crypt_key]

    audit = configure_enclave(c, site, secrets, registry)
    hub.services.append({"name": SUPERVISOR_SERVICE, "api_token": secrets.supervisor_token})
    hub.load_roles.append(
        {
            "name": SUPERVISOR_SERVICE,
            "description": "lets `enclave up` stop every session when it shuts down",
            "scopes": ["list:users", "read:servers", "delete:servers"],
            "services": [SUPERVISOR_SERVICE],
        }
    )

    sessions = site.sessions
    spawner = c.EnclaveSpawner
    configure_project_sessions(spawner, site, registry, audit)
    spawner.project_groups = ProjectGroups(site.state_dir, sessions.gid_base)
    spawner.workspace_root = str(sessions.workspace_root)
    spawner.data_root = str(site.data_root)
    spawner.state_dir = str(site.state_dir)
    spawner.uid_base = sessions.uid_base
    spawner.hub_address = str(sessions.hub_address)
    spawner.hub_port = site.hub.hub_port
    spawner.egress_allow = list(sessions.egress_allow)
    spawner.poll_interval = sessions.poll_interval
