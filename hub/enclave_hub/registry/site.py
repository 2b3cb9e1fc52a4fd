"""The registry of a deployment, opened as each process needs it."""

from __future__ import annotations

from ..audit.client import AuditClient
from ..audit.service import EVENTS_PATH
from ..core.site_config import SiteConfig
from ..core.site_secrets import load_secrets
from .registry import Registry, RegistryError


def _read_only(event: dict) -> None:
    raise RegistryError("this view of the registry is read-only")


def platform_recorder(site: SiteConfig):
    """Records through the audit service as the platform (the hub's services do); the
    credential is read when first needed, so that bad input is refused before anything else is
    touched."""
    clients: list[AuditClient] = []

    def record(event: dict) -> None:
        if not clients:
            token = load_secrets(site.state_dir).audit_ingest_token
            clients.append(AuditClient(f"{site.audit_url}{EVENTS_PATH}", token))
        clients[0].record_sync(event)

    return record


def site_registry(site: SiteConfig, writable: bool = True) -> Registry:
    """The registry, recording its changes through the audit service (or read-only)."""
    record = platform_recorder(site) if writable else _read_only
    profiles = site.sessions.profiles.keys()
    return Registry(site.registry_url, site.data_root, profiles, record)
