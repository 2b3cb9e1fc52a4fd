"""Whether a TCP port can be bound on an address of this machine, and if not, why.

"In use" (naming the process that holds the port, when /proc shows it) is told apart from an
address this machine does not have and from a port this user may not bind.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import os
import socket
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")


@dataclass(frozen=True)
class PortProblem:
    """Why a port cannot be bound (a phrase); `in_use` when another socket holds it."""

    reason: str
    in_use: bool = False


def port_problem(address: str, port: int) -> PortProblem | None:
    """What stops `port` from being bound on `address`, or None when nothing does."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((address, port))
        except OSError as error:
            return _describe(error, address, port)
    return None


def _describe(error: OSError, address: str, port: int) -> PortProblem:
    if error.errno == errno.EADDRINUSE:
        holders = ", ".join(holders_of(address, port))
        return PortProblem(f"is already in use{f' by {holders}' if holders else ''}", True)
    if error.errno == errno.EADDRNOTAVAIL:
        return PortProblem(f"cannot be bound: {address} is not an address of this machine")
    if error.errno in (errno.EACCES, errno.EPERM):
        return PortProblem("may not be bound by this user (permission denied)")
    return PortProblem(f"cannot be bound: {error.strerror}")


def _proc_address(hex_address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """An address as /proc/net/tcp{,6} writes it: 32-bit words, each in host (little) order."""
    raw = bytes.fromhex(hex_address)
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    return ipaddress.ip_address(words)


def bound_sockets(address: str, port: int | None = None) -> set[int]:
    """Inodes of the TCP sockets of this network namespace bound on `address` and `port`.

    Without a port: the sockets bound on exactly that address. With one: every socket that
    holds the port there, wildcard bindings included.
    """
    wanted = ipaddress.ip_address(address)
    inodes: set[int] = set()
    for table in ("tcp", "tcp6"):
        try:
            lines = (PROC / "net" / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local_address, local_port = fields[1].split(":")
            # Inode 0: a connection closing after its process let go (TIME_WAIT and the like).
            if fields[9] == "0" or (port is not None and int(local_port, 16) != port):
                continue
            local = _proc_address(local_address)
            if local == wanted or (port is not None and _overlap(local, wanted)):
                inodes.add(int(fields[9]))
    return inodes


def _overlap(local: ipaddress._BaseAddress, wanted: ipaddress._BaseAddress) -> bool:
    """Whether a socket bound on `local` holds its port on `wanted` too (either is a wildcard)."""
    return local.is_unspecified or wanted.is_unspecified


def holders_of(address: str, port: int) -> list[str]:
    """The processes holding `port` on `address` (or on every address), as 'NAME (pid N)'."""
    inodes = {f"socket:[{inode}]" for inode in bound_sockets(address, port)}
    found = []
    for process in PROC.iterdir():
        if process.name.isdigit() and not inodes.isdisjoint(_open_files(process)):
            with contextlib.suppress(OSError):
                found.append(f"{(process / 'comm').read_text().strip()} (pid {process.name})")
    return found


def _open_files(process: Path) -> set[str]:
    """What the descriptors of a process point at (those it still has while they are read)."""
    targets = set()
    with contextlib.suppress(OSError):
        for descriptor in (process / "fd").iterdir():
            with contextlib.suppress(OSError):
                targets.add(os.readlink(descriptor))
    return targets
