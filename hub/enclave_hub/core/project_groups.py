"""The Unix group of each project, which owns its shared folder."""

from __future__ import annotations

import json
import os
from pathlib import Path

FILE_NAME = "project-groups.json"


class ProjectGroups:
    """A stable group id for each project, kept in a file of the hub's state directory.

    Sessions of one project share its group, which owns the project's shared folder.
    """

    def __init__(self, state_dir: Path, gid_base: int):
        self.path = state_dir / FILE_NAME
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
