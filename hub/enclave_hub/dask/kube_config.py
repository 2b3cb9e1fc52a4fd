"""The Dask gateway on Kubernetes: dask-gateway's chart runs `dask-gateway-server` from
Enclave's hub image, and its configuration file ends with `configure(c)` (the chart's
`gateway.extraConfig`), which makes it Enclave's gateway.

The chart gives the gateway's pod no volumes of its own, so what it needs comes through its
environment: the site configuration (`ENCLAVE_SITE`, from the ConfigMap enclave-site), the
gateway's token at the hub (`JUPYTERHUB_API_TOKEN`) and its audit token
(`ENCLAVE_AUDIT_TOKEN`), both from the Secret enclave-secrets.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import yaml

from ..core.services import DASK_GATEWAY
from ..core.site_config import SiteConfig, SiteConfigError, parse_site_config
from .identity import SessionAuthenticator
from .kube_backend import PodBackend

SITE_VARIABLE = "ENCLAVE_SITE"
HUB_TOKEN_VARIABLE = "JUPYTERHUB_API_TOKEN"
AUDIT_TOKEN_VARIABLE = "ENCLAVE_AUDIT_TOKEN"
# The notebook image's Dask, as distributed ships its commands.
SCHEDULER_COMMAND = ["dask", "scheduler"]
WORKER_COMMAND = ["dask", "worker"]


def _variable(environ: Mapping[str, str], name: str) -> str:
    value = environ.get(name)
    if not value:
        raise SiteConfigError(f"{name}: the gateway's environment does not set it")
    return value


def site_from(environ: Mapping[str, str]) -> SiteConfig:
    """The site configuration in the environment; SiteConfigError naming what is wrong."""
    text = _variable(environ, SITE_VARIABLE)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise SiteConfigError(f"{SITE_VARIABLE}: not valid YAML: {error}") from None
    site = parse_site_config(data, SITE_VARIABLE)
    if site.kubernetes is None:
        raise SiteConfigError(f"{SITE_VARIABLE}: the site configuration has no kubernetes section")
    return site


def configure(c: Any, environ: Mapping[str, str] = os.environ) -> None:
    """Make the gateway configured by `c` (after the chart's own settings) Enclave's."""
    site = site_from(environ)
    kube = site.kubernetes
    hub_token = _variable(environ, HUB_TOKEN_VARIABLE)
    c.DaskGateway.backend_class = PodBackend
    c.DaskGateway.authenticator_class = SessionAuthenticator
    c.JupyterHubAuthenticator.jupyterhub_api_url = site.hub_api_url
    c.JupyterHubAuthenticator.jupyterhub_api_token = hub_token
    c.JupyterHubAuthenticator.jupyterhub_service_name = DASK_GATEWAY.name
    c.PodBackend.site = site
    c.PodBackend.hub_api_token = hub_token
    c.PodBackend.audit_token = _variable(environ, AUDIT_TOKEN_VARIABLE)
    cluster = c.KubeClusterConfig
    cluster.namespace = kube.namespace
    cluster.image = kube.session_image
    cluster.image_pull_policy = kube.image_pull_policy
    cluster.scheduler_cmd = SCHEDULER_COMMAND
    cluster.worker_cmd = WORKER_COMMAND
    cluster.scheduler_cores = 1
    cluster.scheduler_memory = int(site.dask.scheduler_memory)
