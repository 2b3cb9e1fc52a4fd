"""Where the hub keeps its files inside the state folder: read by the hub's configuration, the
supervisor and backups (a module of its own, so they need not import the hub to know it)."""

from __future__ import annotations

from pathlib import Path

from ..core.site_config import SiteConfig


def hub_paths(site: SiteConfig) -> dict[str, Path]:
    """The hub's database and its pid file."""
    state = site.state_dir
    return {
        "database": state / "jupyterhub.sqlite",
        "pid_file": state / "run" / "hub.pid",
    }
