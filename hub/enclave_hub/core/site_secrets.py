"""Secrets of a deployment: generated on first start, kept in files of mode 0600.

They are read by the processes that need them and never placed in command lines,
log messages or the environment of notebook sessions.
"""

from __future__ import annotations

import os
import secrets
import stat
from dataclasses import dataclass, fields
from pathlib import Path


class SecretError(Exception):
    """A secret file is unusable (for example readable by others)."""


@dataclass(frozen=True)
class Secrets:
    """The deployment's secrets, as hex strings."""

    cookie_secret: str
    crypt_key: str
    proxy_token: str
    oauth_client_secret: str
    supervisor_token: str
    audit_ingest_token: str  # the hub's credential for sending events to the audit service
    audit_service_token: str  # the audit service's own token at the hub
    registry_service_token: str  # the registry service's token at the hub (the reconciler)
    gateway_service_token: str  # the Dask gateway's token at the hub (who holds a token)
    airlock_service_token: str  # the airlock service's token at the hub (sign-in, sessions)
    inquiry_service_token: str  # the inquiry service's token at the hub (sign-in)
    packages_service_token: str  # the package index's token at the hub (sessions' tokens)
    jobs_service_token: str  # the job service's token at the hub (sessions' tokens)

    def values(self) -> list[str]:
        return [getattr(self, name) for name in SECRET_NAMES]


SECRET_NAMES = tuple(secret.name for secret in fields(Secrets))


def secrets_dir(state_dir: Path) -> Path:
    return state_dir / "secrets"


def secret_path(state_dir: Path, name: str) -> Path:
    return secrets_dir(state_dir) / name


def _shared_beyond_this_process(status: os.stat_result) -> bool:
    """Others may read the file, or a group this process is not in, or root's group.

    A group of its own is allowed: Kubernetes mounts a pod's secrets readable by the pod's
    own group (fsGroup), which no other pod's processes are in.
    """
    mode = stat.S_IMODE(status.st_mode)
    if mode & 0o007:
        return True
    own_groups = {os.getegid(), *os.getgroups()}
    return bool(mode & 0o070) and (status.st_gid == 0 or status.st_gid not in own_groups)


def _read_secret(path: Path) -> str:
    status = path.stat()
    if _shared_beyond_this_process(status):
        mode = stat.S_IMODE(status.st_mode)
        raise SecretError(f"{path} is readable by others (mode {mode:o}); it must be 0600")
    value = path.read_text().strip()
    if len(value) < 32:
        raise SecretError(f"{path} holds too short a secret; delete it to generate a new one")
    return value


def _create_secret(path: Path) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(secrets.token_hex(32) + "\n")


def ensure_secrets(state_dir: Path) -> Secrets:
    """Create any missing secret, then load them all."""
    folder = secrets_dir(state_dir)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    for name in SECRET_NAMES:
        path = folder / name
        if not path.exists():
            _create_secret(path)
    return load_secrets(state_dir)


def load_secrets(state_dir: Path) -> Secrets:
    """Load existing secrets; raise SecretError naming the file that is wrong."""
    values = {}
    for name in SECRET_NAMES:
        path = secret_path(state_dir, name)
        if not path.exists():
            raise SecretError(f"{path} is missing; `enclave up` generates it on start")
        values[name] = _read_secret(path)
    return Secrets(**values)
