"""The registry of a deployment, opened as each process needs it."""

from __future__ import annotations

from ..core.audit_client import platform_recorder
from ..core.site_config import SiteConfig
from .registry import Registry, RegistryError


def _read_only(event: dict) -> None:
    raise RegistryError("this view of the registry is read-only")


def site_registry(site: SiteConfig, writable: bool = True) -> Registry:
    """The registry, recording its changes through the audit service (or read-only)."""
    record = platform_recorder(site) if writable else _read_only
    profiles = site.sessions.profiles.keys()
    return Registry(site.registry_url, site.data_root, profiles, record)
