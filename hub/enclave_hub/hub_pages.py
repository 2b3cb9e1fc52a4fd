"""What the hub's own pages show beyond JupyterHub's: the frame (`core/pages`) with the
person's navigation, and each role's home page. Given to the hub's templates as
`template_vars`, each computed for the signed-in user when a page is drawn."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from .core.pages import Frame, error_heading, frame_for, role_tools, shown_time
from .core.registry import ActiveProject, DatabaseUnavailable, Registry
from .core.services import AIRLOCK
from .core.site_config import SiteConfig

HUB_TEMPLATES = Path(__file__).with_name("templates")
DESK_TIMEOUT = 2.0  # seconds the home page waits for the airlock


@dataclass
class Home:
    """One person's home page: their projects, what they check, and their tools."""

    projects: list[ActiveProject]
    checks: list[str]
    desk: dict | None = None  # the airlock's answer, None when it could not be asked
    tools: list[tuple[str, str, str]] = field(default_factory=list)  # (name, href, what for)
    airlock: str = AIRLOCK.prefix
    unavailable: str = ""  # why projects cannot be shown now (the database is unavailable)


class HubPages:
    """The template variables of the hub's pages for one deployment."""

    def __init__(self, site: SiteConfig, registry: Registry, airlock_token: str):
        self.site = site
        self.registry = registry
        self.airlock_token = airlock_token

    def template_vars(self) -> dict[str, Any]:
        return {
            "enclave_frame": self.frame,
            "enclave_home": self.home,
            "enclave_when": lambda user: shown_time,
            "enclave_error_heading": lambda user: error_heading,
        }

    def role(self, user) -> str | None:
        return self.site.platform_role(group.name for group in user.groups)

    def frame(self, user) -> Frame:
        if user is None:
            return frame_for("My projects", None, None)
        return frame_for("My projects", user.name, self.role(user))

    def home(self, user) -> Home | None:
        if user is None:
            return None
        try:
            projects = self.registry.projects_of(user.name)
            checks = self.registry.checked_by(user.name)
        except DatabaseUnavailable as error:
            # Every hub page asks for this, error pages too: it says so instead of failing.
            return Home([], [], tools=role_tools(self.role(user)), unavailable=str(error))
        return Home(
            projects=projects,
            checks=checks,
            desk=self.desk(user.name),
            tools=role_tools(self.role(user)),
        )

    def desk(self, username: str) -> dict | None:
        """The person's requests at the airlock and how many await their review."""
        url = f"{self.site.airlock_url}{AIRLOCK.prefix}api/desks/{quote(username, safe='')}"
        request = urllib.request.Request(
            url, headers={"Authorization": f"token {self.airlock_token}"}
        )
        try:
            with urllib.request.urlopen(request, timeout=DESK_TIMEOUT) as answer:
                return json.load(answer)
        except (urllib.error.URLError, OSError, ValueError):
            return None
