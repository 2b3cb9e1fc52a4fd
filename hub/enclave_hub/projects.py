"""Which projects a user may start sessions for.

For now the projects come from the seed list in the site configuration; the project registry
service replaces this with memberships that admins grant, with expiry dates.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

from .config import Project


class SeedRegistry:
    """Projects and their members as listed in the site configuration."""

    def __init__(self, projects: Iterable[Project]):
        self._projects = {project.id: project for project in projects}

    def projects_of(self, username: str) -> list[Project]:
        return [p for p in self._projects.values() if username in p.members]

    def membership(self, username: str, project_id: str) -> Project | None:
        """The project if `username` is a member of it, else None."""
        project = self._projects.get(project_id)
        if project is None or username not in project.members:
            return None
        return project


class ProjectGroups:
    """A stable group id for each project, kept in a file of the hub's state directory.

    Sessions of one project share its group, which owns the project's shared folder.
    """

    def __init__(self, path: Path, gid_base: int):
        self.path = path
        self.gid_base = gid_base

    def _load(self) -> dict[str, int]:
        try:
            return json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}

    def gid(self, project_id: str) -> int:
        groups = self._load()
        if project_id not in groups:
            groups[project_id] = max(groups.values(), default=self.gid_base) + 1
            temporary = self.path.with_suffix(".tmp")
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as out:
                json.dump(groups, out)
            os.replace(temporary, self.path)
        return groups[project_id]
