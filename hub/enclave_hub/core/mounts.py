"""Where a session's files are, inside it and in the workspace, for every deployment: the
sandbox's bind mounts, the pods' volume mounts, the Dask clusters and the spawners use these."""

from __future__ import annotations

PROJECT_MOUNT = "/project"  # the project's shared folder
DATA_MOUNT = "/data"  # one read-only folder per granted dataset
SESSION_CONFIG_MOUNT = "/run/enclave-jupyter"  # the session server's own settings


def home_inside(user: str) -> str:
    """A person's home folder as their session sees it."""
    return f"/home/{user}"


def home_subpath(project: str, user: str) -> str:
    """A person's home folder in a project, relative to the workspace root."""
    return f"{project}/home/{user}"


def shared_subpath(project: str) -> str:
    """A project's shared folder, relative to the workspace root."""
    return f"{project}/shared"
