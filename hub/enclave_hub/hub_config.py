"""JupyterHub's configuration, derived from the site configuration: what every Enclave hub
has, on one machine (`local/hub_config.py`) and on Kubernetes (`kubernetes/hub_config.py`).
Nothing else about the hub is configured by hand, so the site configuration stays the one
description of a deployment.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from jupyterhub.utils import subdomain_hook_idna

from .auth import EnclaveAuthenticator
from .core.audit_client import AuditClient, site_audit_client
from .core.pages import FRAME_TEMPLATES
from .core.registry import DatabaseUnavailable, RegistryError, site_registry
from .core.services import (
    AIRLOCK,
    AUDIT,
    AUDIT_EVENTS_PATH,
    DASK_GATEWAY,
    HUB_PREFIX,
    INQUIRY,
    JOBS,
    PACKAGES,
    REGISTRY,
)
from .core.site_config import SiteConfig, SiteConfigError
from .core.site_secrets import Secrets
from .core.validation import InvalidInput
from .hub_access import REFLECT_SCOPE, USER_ROLE, HubAccess
from .hub_pages import HUB_TEMPLATES, HubPages


def fetch_provider_metadata(issuer: str) -> dict[str, Any]:
    """The issuer's OpenID Connect discovery document."""
    url = f"{issuer}/.well-known/openid-configuration"
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            metadata = json.load(response)
    except (urllib.error.URLError, OSError, ValueError) as error:
        raise SiteConfigError(
            f"identity.issuer: cannot read the provider's discovery document {url}: {error}"
        ) from None
    missing = [
        key
        for key in ("authorization_endpoint", "token_endpoint", "userinfo_endpoint")
        if key not in metadata
    ]
    if missing:
        raise SiteConfigError(f"identity.issuer: {url} lacks {', '.join(missing)}")
    return metadata


def seeded_registry(site: SiteConfig):
    """The site's project registry, with the configuration's seed projects put in if empty."""
    registry = site_registry(site)
    try:
        registry.seed(site.projects)
    except DatabaseUnavailable as error:  # a hub started during an outage starts all the same
        print(f"{error}: the seed projects are put in at the hub's next start", flush=True)
    except (InvalidInput, RegistryError) as error:
        raise SiteConfigError(f"projects: cannot seed the project registry: {error}") from None
    return registry


def user_subdomain(name: str, domain: str, kind: str) -> str:
    """Each user's sessions on an origin of their own (JupyterHub's IDNA-safe name); the
    services' pages stay on the hub's, as they show no one's files but their own."""
    return subdomain_hook_idna(name, domain, kind) if kind == "user" else domain


def configure_enclave(c: Any, site: SiteConfig, secrets: Secrets, registry) -> AuditClient:
    """What a hub of Enclave is wherever it runs: its pages, its services and their roles, the
    sign-in through the site's OpenID Connect provider. Returns the hub's audit client."""
    hub = c.JupyterHub
    hub.allow_named_servers = True
    hub.default_url = f"{HUB_PREFIX}home"
    # A start taking longer than a second shows its progress page, which names each step.
    hub.tornado_settings = {"slow_spawn_timeout": 1}
    hub.template_paths = [str(HUB_TEMPLATES), str(FRAME_TEMPLATES)]
    hub.template_vars = HubPages(site, registry, secrets.airlock_service_token).template_vars()
    if site.hub.user_subdomains:
        hub.subdomain_host = site.public_url
        hub.subdomain_hook = user_subdomain
        # `__Host-` cookies must be Secure, which needs HTTPS.
        hub.cookie_host_prefix_enabled = site.public_url.startswith("https://")
    hub.authenticator_class = EnclaveAuthenticator
    add_enclave_services(hub, site, secrets)
    hub.custom_scopes = {
        REFLECT_SCOPE: {"description": "re-apply the registry's project groups and roles"}
    }
    audit = site_audit_client(site, secrets.audit_ingest_token)
    configure_authenticator(c.EnclaveAuthenticator, site, secrets, registry, audit)
    return audit


def add_enclave_services(hub: Any, site: SiteConfig, secrets: Secrets) -> None:
    """Enclave's services and their roles, added to those the hub's configuration already has
    (Zero to JupyterHub's idle culler)."""
    hub.services = [*hub.get("services", []), *enclave_services(site, secrets)]
    hub.load_roles = [*hub.get("load_roles", []), *enclave_roles()]


def enclave_services(site: SiteConfig, secrets: Secrets) -> list[dict[str, Any]]:
    """The hub's services: the registry, audit, airlock and inquiry portal (with pages), and
    the Dask gateway."""
    pages = {"oauth_no_confirm": True, "display": True}
    return [
        {
            "name": REGISTRY.name,
            "url": site.registry_service_url,
            "api_token": secrets.registry_service_token,
            **pages,
        },
        {
            # Started before the hub; the hub routes its console and signs auditors in to it.
            "name": AUDIT.name,
            "url": site.audit_url,
            "api_token": secrets.audit_service_token,
            **pages,
        },
        {
            # Where sessions send their export requests with their own tokens; the hub routes
            # people's browsers to its pages.
            "name": AIRLOCK.name,
            "url": site.airlock_url,
            "api_token": secrets.airlock_service_token,
            **pages,
        },
        {
            # The data inquiry portal: catalogue, cohort counts and applications, for people
            # of the allowed groups, members of no project too.
            "name": INQUIRY.name,
            "url": site.inquiry_service_url,
            "api_token": secrets.inquiry_service_token,
            **pages,
        },
        {
            # Sessions' pip reaches it directly, on the hub's address, with their tokens.
            "name": PACKAGES.name,
            "api_token": secrets.packages_service_token,
        },
        {
            # Sessions submit their jobs directly, on the hub's address, with their tokens.
            "name": JOBS.name,
            "api_token": secrets.jobs_service_token,
        },
        {
            # No URL: the gateway is reached by sessions directly, never through the public
            # proxy (its dashboards would be open there to anyone with a link).
            "name": DASK_GATEWAY.name,
            "api_token": secrets.gateway_service_token,
        },
    ]


def enclave_roles() -> list[dict[str, Any]]:
    """The roles of the hub's services, and the redefined user role."""
    sessions_reader = ["list:users", "read:users", "read:servers", "admin:server_state"]
    return [
        {
            "name": REGISTRY.name,
            "description": "lets the reconciler stop sessions that the registry no longer allows "
            "and reflect the registry into groups and roles",
            "scopes": [*sessions_reader, "delete:servers", REFLECT_SCOPE],
            "services": [REGISTRY.name],
        },
        {
            "name": AIRLOCK.name,
            "description": "lets the airlock name the session run an export request came from",
            "scopes": sessions_reader,
            "services": [AIRLOCK.name],
        },
        {
            "name": PACKAGES.name,
            "description": "lets the package index name the session run a download was for",
            "scopes": sessions_reader,
            "services": [PACKAGES.name],
        },
        {
            "name": JOBS.name,
            "description": "lets the job service name the session run a job was submitted from",
            "scopes": sessions_reader,
            "services": [JOBS.name],
        },
        {
            "name": DASK_GATEWAY.name,
            "description": "lets the Dask gateway see which sessions run, to end their clusters",
            "scopes": sessions_reader,
            "services": [DASK_GATEWAY.name],
        },
        # Users' roles are the authenticator's to give (hub_access); this one is only redefined.
        USER_ROLE,
    ]


def configure_authenticator(
    auth: Any, site: SiteConfig, secrets: Secrets, registry, audit: AuditClient
) -> None:
    """Sign-in through the site's OpenID Connect provider, with groups and roles from it."""
    provider = fetch_provider_metadata(site.issuer_url)
    identity = site.identity
    auth.client_id = identity.client_id
    auth.client_secret = secrets.oauth_client_secret
    auth.basic_auth = True  # client_secret_basic, the OIDC default token endpoint auth
    auth.oauth_callback_url = f"{site.public_url}/hub/oauth_callback"
    auth.authorize_url = provider["authorization_endpoint"]
    auth.token_url = provider["token_endpoint"]
    auth.userdata_url = provider["userinfo_endpoint"]
    auth.scope = list(identity.scopes)
    auth.username_claim = identity.username_claim
    auth.login_service = "your institution" if identity.issuer else "the Enclave demo provider"
    auth.enable_pkce = True
    auth.enable_auth_state = True
    auth.manage_groups = True
    auth.manage_roles = True
    auth.access = HubAccess(
        registry,
        admin_groups=frozenset(identity.admin_groups),
        auditor_groups=frozenset(site.audit.auditor_groups),
        inquiry_groups=frozenset(site.inquiry.groups),
    )
    auth.auth_state_groups_key = f"oauth_user.{identity.groups_claim}"
    auth.allowed_groups = set(identity.allowed_groups)
    auth.refresh_pre_spawn = True
    auth.auth_refresh_strict = True
    auth.auth_refresh_age = identity.refresh_age
    auth.audit = audit
    auth.proxy_address = str(site.sessions.hub_address)
    auth.issuer = provider.get("issuer") or site.issuer_url


def configure_project_sessions(spawner: Any, site: SiteConfig, registry, audit) -> None:
    """What every spawner of project sessions is told (`project_session.ProjectSession`)."""
    sessions = site.sessions
    spawner.registry = registry
    spawner.profiles = dict(sessions.profiles)
    spawner.start_timeout = sessions.start_timeout
    spawner.http_timeout = sessions.start_timeout
    spawner.audit = audit
    spawner.audit_url = site.audit_url
    spawner.audit_events_path = AUDIT_EVENTS_PATH
    # A session's token: its own server, its activity, the Dask gateway, the airlock, the
    # package index and the job service.
    spawner.server_token_scopes = [
        "access:servers!server",
        "users:activity!user",
        DASK_GATEWAY.access_scope,
        AIRLOCK.access_scope,
        PACKAGES.access_scope,
        JOBS.access_scope,
    ]
    spawner.airlock_url = f"{site.airlock_url}{AIRLOCK.prefix}"
    spawner.packages_url = f"{site.packages_url}{PACKAGES.prefix}"
    spawner.jobs_url = f"{site.jobs_url}{JOBS.prefix}"
    spawner.view_max_bytes = int(sessions.view_max_bytes)
    spawner.gateway_url = site.gateway_url
    spawner.gateway_scheduler_proxy = site.gateway_scheduler_proxy
