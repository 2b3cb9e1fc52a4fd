"""The Dask gateway of a deployment: dask-gateway-server, configured from the site configuration.

Started by `enclave up` (and restarted if it exits):
`python -m enclave_hub.dask.service --config <site.yaml>`. It listens on the hub's address
only, which sessions reach and browsers do not: its API for schedulers (`dask.api_port`), its
HTTP proxy for sessions' gateway clients (`dask.proxy_port`) and its TLS proxy for their
connections to schedulers (`dask.scheduler_proxy_port`). Registered at the hub as the service
`dask-gateway`, with no route through the public proxy.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dask_gateway_server.app import DaskGateway
from traitlets.config import Config

from ..core.services import DASK_GATEWAY
from ..core.site_config import SiteConfig, load_site_config
from ..core.site_secrets import load_secrets
from .backend import SandboxBackend
from .identity import SessionAuthenticator


def gateway_config(site: SiteConfig) -> Config:
    """The gateway's traitlets configuration for this deployment."""
    secrets = load_secrets(site.state_dir)
    hub_address = site.sessions.hub_address
    hub_api = site.hub_api_url
    dask_command = str(Path(sys.prefix, "bin", "dask"))
    c = Config()
    c.DaskGateway.address = f"{hub_address}:{site.dask.api_port}"
    c.DaskGateway.backend_class = SandboxBackend
    c.DaskGateway.authenticator_class = SessionAuthenticator
    c.Proxy.address = f"{hub_address}:{site.dask.proxy_port}"
    c.Proxy.tcp_address = f"{hub_address}:{site.dask.scheduler_proxy_port}"
    c.JupyterHubAuthenticator.jupyterhub_api_url = hub_api
    c.JupyterHubAuthenticator.jupyterhub_api_token = secrets.gateway_service_token
    c.JupyterHubAuthenticator.jupyterhub_service_name = DASK_GATEWAY.name
    c.ClusterConfig.scheduler_cmd = [dask_command, "scheduler"]
    c.ClusterConfig.worker_cmd = [dask_command, "worker"]
    c.SandboxBackend.site = site
    c.SandboxBackend.hub_api_token = secrets.gateway_service_token
    c.SandboxBackend.audit_token = secrets.audit_ingest_token
    # Schedulers report to the private API directly, the one gateway port their firewall opens.
    c.SandboxBackend.api_url = f"http://{c.DaskGateway.address}/api"
    return c


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="enclave-dask-gateway")
    parser.add_argument("--config", type=Path, required=True, help="resolved site configuration")
    args = parser.parse_args(argv)
    gateway = DaskGateway(config=gateway_config(load_site_config(args.config)))
    gateway.initialize([])
    gateway.start()


if __name__ == "__main__":
    main()
