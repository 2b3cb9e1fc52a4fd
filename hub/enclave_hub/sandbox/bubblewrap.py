"""The bubblewrap command line that confines a session's processes.

New user, mount, pid, ipc, uts and cgroup namespaces, a new terminal session, no capabilities
and no new privileges (bubblewrap always sets PR_SET_NO_NEW_PRIVS and mounts with nosuid).
The session sees the system and the Python environment read-only, its project's datasets
read-only under /data, its home and the project's shared folder read-write, and nothing else
of the host: no hub state, no other homes, no host /proc or /sys.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

import enclave
import enclave_hub

from ..core.mounts import DATA_MOUNT, PROJECT_MOUNT, SESSION_CONFIG_MOUNT

SYSTEM_READ_ONLY = ("/usr", "/etc")
USR_MERGED_LINKS = {
    "/bin": "usr/bin",
    "/sbin": "usr/sbin",
    "/lib": "usr/lib",
    "/lib64": "usr/lib64",
}


@dataclass(frozen=True)
class SandboxView:
    """What a session sees of the host."""

    home: Path
    home_inside: str
    project_folder: Path
    datasets: dict[str, Path]
    runtime: list[Path]
    hosts_file: Path
    resolv_conf: Path
    hostname: str
    devices: list[str] = field(default_factory=list)
    session_config: Path | None = None  # Jupyter configuration of this session alone
    workdir: str | None = None  # where the command starts, inside; default: the home


def _system_mounts() -> list[str]:
    args: list[str] = []
    for path in SYSTEM_READ_ONLY:
        args += ["--ro-bind", path, path]
    for link, target in USR_MERGED_LINKS.items():
        if Path(link).is_symlink():
            args += ["--symlink", target, link]
        elif Path(link).exists():
            args += ["--ro-bind", link, link]
    return args


def runtime_paths() -> list[Path]:
    """The Python environment and Enclave's own code, which sandboxes see read-only."""
    paths = {Path(sys.prefix).resolve()}
    for package in (enclave, enclave_hub):
        paths.add(Path(package.__file__).resolve().parent.parent)
    # Drop any path that lies inside another.
    return sorted(p for p in paths if not any(q != p and q in p.parents for q in paths))


def bwrap_argv(view: SandboxView, command: list[str]) -> list[str]:
    """The full command: bwrap, its options, then the session's own command."""
    args = [
        "bwrap",
        "--unshare-user",
        "--unshare-ipc",
        "--unshare-pid",
        "--unshare-uts",
        "--unshare-cgroup-try",
        "--new-session",
        "--die-with-parent",
        "--cap-drop",
        "ALL",
        "--hostname",
        view.hostname,
        *_system_mounts(),
        "--ro-bind",
        str(view.hosts_file),
        "/etc/hosts",
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--tmpfs",
        "/tmp",
        "--tmpfs",
        "/run",
    ]
    for path in view.runtime:
        args += ["--ro-bind", str(path), str(path)]
    if view.session_config is not None:
        args += ["--ro-bind", str(view.session_config), SESSION_CONFIG_MOUNT]
    for device in view.devices:
        args += ["--dev-bind", device, device]
    args += ["--dir", DATA_MOUNT]
    for dataset, path in sorted(view.datasets.items()):
        args += ["--ro-bind", str(path), f"{DATA_MOUNT}/{dataset}"]
    args += [
        "--bind",
        str(view.home),
        view.home_inside,
        "--bind",
        str(view.project_folder),
        PROJECT_MOUNT,
        "--chdir",
        view.workdir or view.home_inside,
        "--",
        *command,
    ]
    return args
