"""Which projects a user may start sessions for.

For now the projects come from the seed list in the site configuration; the project registry
service replaces this with memberships that admins grant, with expiry dates.
"""

from __future__ import annotations

from collections.abc import Iterable

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
