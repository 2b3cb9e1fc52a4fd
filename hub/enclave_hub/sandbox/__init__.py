"""The sandbox of one notebook session: network namespace and firewall, cgroup, bubblewrap.

`SessionSandbox.create` builds it step by step and, if any step fails, removes what the earlier
steps made, so a failed start leaves nothing behind. `launch_hook` returns the function that the
session's process runs just before it executes bubblewrap: join the cgroup, enter the network
namespace, drop to the session's uid and gid.
"""

from __future__ import annotations

import ctypes
import ipaddress
import logging
import os
import shutil
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .cgroup import CgroupError, Limits, SessionCgroup
from .network import (
    Endpoint,
    NetworkError,
    SessionNetwork,
    numbers_in_use,
    release_session_number,
    reserve_session_number,
)

__all__ = [
    "Endpoint",
    "Limits",
    "SandboxError",
    "SessionSandbox",
    "SessionSpec",
    "built_numbers",
    "files_dir",
    "numbers_in_use",
    "process_start_time",
    "release_session_number",
    "reserve_session_number",
    "resolve_endpoints",
]

log = logging.getLogger("enclave.sandbox")
CLONE_NEWNET = 0x40000000
# Each sandbox's files (hosts, resolv.conf, a session's own Jupyter settings), by number, in
# the deployment's workspace root: bubblewrap reads them as the sandbox's user. A folder there
# is also what marks a sandbox on this machine as this deployment's.
FILES_FOLDER = ".sandbox"


class SandboxError(Exception):
    """The sandbox could not be built, or no longer holds."""


def process_start_time(pid: int) -> int | None:
    """The start time of a process in clock ticks since boot, or None if it is gone.

    Together with the pid it names one process: a pid reused by a later process has
    another start time.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Fields after the command name, which is in parentheses and may hold spaces.
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[19])


def files_dir(workspace_root: Path, number: int) -> Path:
    """The folder of sandbox `number`'s files."""
    return Path(workspace_root, FILES_FOLDER, str(number))


def built_numbers(workspace_root: Path) -> list[int]:
    """The numbers of the sandboxes this deployment has built and not yet removed."""
    folder = Path(workspace_root, FILES_FOLDER)
    if not folder.is_dir():
        return []
    return sorted(int(entry.name) for entry in folder.iterdir() if entry.name.isdigit())


def resolve_endpoints(entries: list[Any]) -> tuple[list[Endpoint], list[tuple[str, str]]]:
    """Allow-list entries as addresses, and the host names sessions may look up."""
    endpoints, names = [], []
    for entry in entries:
        try:
            addresses = [ipaddress.ip_address(entry.host)]
        except ValueError:
            infos = socket.getaddrinfo(entry.host, entry.port, type=socket.SOCK_STREAM)
            addresses = sorted({ipaddress.ip_address(info[4][0]) for info in infos}, key=str)
            names += [(entry.host, str(address)) for address in addresses]
        endpoints += [Endpoint(address, entry.port) for address in addresses]
    return endpoints, names


@dataclass(frozen=True)
class SessionSpec:
    """Everything that defines one session's sandbox."""

    number: int
    uid: int
    gid: int
    inbound_ports: tuple[int, ...]  # what the host may connect to inside
    allowed: tuple[Endpoint, ...]
    host_names: tuple[tuple[str, str], ...]
    limits: Limits
    files_dir: Path


@dataclass(frozen=True)
class Step:
    name: str
    make: Callable[[], object]
    undo: Callable[[], None]


class SessionSandbox:
    """Creates, checks and removes the sandbox of one session."""

    @classmethod
    def existing(cls, number: int, workspace_root: Path) -> SessionSandbox:
        """A sandbox already built, for checks and removal (which need only its number)."""
        limits = Limits(memory_bytes=0, cpus=1, pids=16)
        spec = SessionSpec(number, 0, 0, (), (), (), limits, files_dir(workspace_root, number))
        return cls(spec)

    def __init__(self, spec: SessionSpec):
        self.spec = spec
        self.network = SessionNetwork(spec.number)
        self.cgroup = SessionCgroup(f"s{spec.number}")
        self.firewall_fingerprint = ""
        self.steps = [
            Step("namespace", self.network.create_namespace, self.network.remove_namespace),
            Step("link", self.network.create_link, self.network.remove_link),
            Step("firewall", self._apply_firewall, lambda: None),
            Step("cgroup", lambda: self.cgroup.create(spec.limits), self.cgroup.remove),
            Step("files", self._write_files, self._remove_files),
        ]

    @property
    def hosts_file(self) -> Path:
        return self.spec.files_dir / "hosts"

    @property
    def resolv_conf(self) -> Path:
        return self.spec.files_dir / "resolv.conf"

    @property
    def session_ip(self) -> str:
        return str(self.network.session_ipv4)

    def create(self) -> None:
        """Build every part, or nothing: a failure undoes the steps already done."""
        started: list[Step] = []
        try:
            for step in self.steps:
                # A step that fails half-way is undone too: every undo tolerates absence.
                started.append(step)
                step.make()
        except Exception as error:
            for step in reversed(started):
                try:
                    step.undo()
                except (NetworkError, CgroupError, OSError) as undo_error:
                    log.error(
                        "undoing %s of session %d: %s", step.name, self.spec.number, undo_error
                    )
            raise SandboxError(f"building the session's sandbox failed: {error}") from error

    def destroy(self) -> None:
        """Remove every part that exists; processes left in the cgroup are killed."""
        for step in reversed(self.steps):
            step.undo()

    def leftovers(self) -> list[str]:
        """The parts of this sandbox that still exist (empty once destroyed)."""
        found = []
        if self.network.exists():
            found.append(f"network namespace {self.network.namespace}")
        if self.network.link_exists():
            found.append(f"link {self.network.host_link}")
        if self.cgroup.exists():
            found.append(f"cgroup {self.cgroup.name}")
        if self.spec.files_dir.exists():
            found.append(f"folder {self.spec.files_dir}")
        return found

    # -- the parts ---------------------------------------------------------------------------

    def _apply_firewall(self) -> None:
        self.firewall_fingerprint = self.network.apply_rules(
            list(self.spec.allowed), self.spec.inbound_ports
        )

    def _write_files(self) -> None:
        self.spec.files_dir.mkdir(mode=0o755, parents=True, exist_ok=True)
        lines = ["127.0.0.1 localhost", "::1 localhost"]
        lines += [f"{address} {name}" for name, address in self.spec.host_names]
        self.hosts_file.write_text("\n".join(lines) + "\n")
        # No name server: names resolve from the hosts file alone, and other lookups fail
        # at once instead of waiting on a server the firewall would not let them reach.
        self.resolv_conf.write_text("# no name server in an Enclave session\n")
        for path in (self.hosts_file, self.resolv_conf):
            path.chmod(0o644)

    def _remove_files(self) -> None:
        shutil.rmtree(self.spec.files_dir, ignore_errors=True)

    # -- checks ------------------------------------------------------------------------------

    def verify(self, fingerprint: str) -> None:
        """Fail closed: raise unless the firewall is exactly as it was loaded."""
        try:
            self.network.verify_rules(fingerprint)
        except NetworkError as error:
            raise SandboxError(str(error)) from None

    def blocked_count(self) -> int:
        return self.network.blocked_count()

    def blocked_destinations(self) -> dict[str, int]:
        return self.network.blocked_destinations()

    # -- entering ----------------------------------------------------------------------------

    def launch_hook(self, home: Path) -> Callable[[], None]:
        """What the session's process runs before exec, while still root."""
        netns_path = f"/run/netns/{self.network.namespace}"
        uid, gid = self.spec.uid, self.spec.gid
        cgroup = self.cgroup
        libc = ctypes.CDLL("libc.so.6", use_errno=True)

        def enter_sandbox() -> None:
            cgroup.join()
            fd = os.open(netns_path, os.O_RDONLY)
            if libc.setns(fd, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns into the session's namespace failed")
            os.close(fd)
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
            os.umask(0o007)
            os.chdir(home)

        return enter_sandbox
