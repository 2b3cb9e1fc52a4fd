"""Clusters prepared ahead of demand for running sessions, and the gateway's end of their fork
servers (`forkserver.py`).

A prepared cluster is a cluster's sandbox, built for one session's project (its firewall, its
cgroup, its datasets and group), with a fork server in it that has Dask imported, waiting;
only so many are kept at once (`dask.prepared_clusters`), none is built while the hub starts
a session, and they are built at the lowest priority and import Dask at next to no CPU weight,
so that a burst of sessions starting is not slowed by them (prepared for every session as it
started, 50 starting at once took 1.87x as long). A
cluster the session then asks for takes it if it is still what would be built now, and its
scheduler and workers are forked there rather than started afresh: a cluster is ready in the
time its processes take to listen, not to import Dask. A prepared cluster serves one session
and one cluster, and is removed with it; nothing in it has met anyone else.
"""

from __future__ import annotations

import json
import socket
import struct
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path

from .. import sandbox
from ..sandbox.bubblewrap import SandboxView

ORDER_TIMEOUT = 60.0
_CREDENTIALS = struct.Struct("3i")  # pid, uid, gid of the packet's sender


class ForkServerGone(Exception):
    """The fork server did not take an order: it has exited, or did not answer in time."""


def order_sockets() -> tuple[socket.socket, socket.socket]:
    """The gateway's end (told each sender's pid) and the fork server's end (inheritable)."""
    gateway_end, server_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    gateway_end.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    gateway_end.settimeout(ORDER_TIMEOUT)
    server_end.set_inheritable(True)
    return gateway_end, server_end


@dataclass
class PreparedCluster:
    """A sandbox with a fork server in it, for one session; `orders` is the gateway's end."""

    box: sandbox.SessionSandbox
    view: SandboxView
    orders: socket.socket
    pid: int  # the fork server's bubblewrap
    started: int
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def home(self) -> Path:
        return self.view.home

    def move_home(self, home: Path) -> None:
        """Rename the cluster's folder to `home`: its sandbox sees the same folder, as before."""
        self.home.rename(home)
        self.view = replace(self.view, home=home)

    def alive(self) -> bool:
        return sandbox.process_start_time(self.pid) == self.started

    def fork(self, argv: list[str], env: dict[str, str], log_fd: int) -> int:
        """Start `dask <argv>` in the sandbox with `env` added, logging to `log_fd`; its pid.

        Blocking: one order at a time, as each answer is told apart only by its sender."""
        message = json.dumps({"argv": argv, "env": env}).encode()
        with self._lock:
            try:
                socket.send_fds(self.orders, [message], [log_fd])
                data, ancillary, _, _ = self.orders.recvmsg(16, socket.CMSG_SPACE(12))
            except OSError as error:
                raise ForkServerGone(f"the prepared cluster's fork server: {error}") from None
        if data != b"started":
            raise ForkServerGone("the prepared cluster's fork server has exited")
        for level, kind, payload in ancillary:
            if (level, kind) == (socket.SOL_SOCKET, socket.SCM_CREDENTIALS):
                return _CREDENTIALS.unpack(payload[: _CREDENTIALS.size])[0]
        raise ForkServerGone("the fork server's answer carried no credentials")

    def close(self) -> None:
        self.orders.close()
