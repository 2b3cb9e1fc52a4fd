"""What a job left in its folder: each regular file's name, size and SHA-256.

The folder is written by the job's code, as its member's uid, and read here as root: the walk
follows no link and opens nothing but regular files, each relative to its folder's descriptor,
so that a link or a pipe planted there can neither redirect nor block it. Links and other
non-files are listed as such, never silently left out.
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

CHUNK = 1024 * 1024


def _file_digest(name: str, folder_fd: int) -> tuple[int, str] | None:
    """Size and SHA-256 of a regular file, or None if `name` is not one (any more)."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=folder_fd)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            return None
        digest, size = hashlib.sha256(), 0
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def manifest(folder: Path) -> list[dict]:
    """Every entry under `folder`, by its path relative to it, in name order."""
    found = []
    for parent, folders, files, parent_fd in os.fwalk(folder, follow_symlinks=False):
        relative = Path(parent).relative_to(folder)
        for name in [*files, *(f for f in folders if _is_link(f, parent_fd))]:
            path = (relative / name).as_posix()
            facts = _file_digest(name, parent_fd)
            if facts is None:
                found.append({"name": path, "sha256": None, "size": None, "note": "not a file"})
            else:
                found.append({"name": path, "sha256": facts[1], "size": facts[0]})
    return sorted(found, key=lambda entry: entry["name"])


def _is_link(name: str, folder_fd: int) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=folder_fd, follow_symlinks=False).st_mode)
    except OSError:
        return False
