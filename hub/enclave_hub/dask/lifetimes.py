"""A cluster lives only as long as its session, its membership and its project.

Every few seconds the gateway compares its clusters with the hub's running sessions and the
registry. It stops a cluster whose session has stopped, whose user's membership or project is
no longer in force (a suspended project, say), or whose scheduler has exited or whose firewall
no longer holds. While the hub or the registry's database cannot be reached, clusters are
left as they are.
"""

from __future__ import annotations

import asyncio

import httpx
from dask_gateway_server.utils import timestamp

from ..core.registry import DatabaseUnavailable, Outage
from .identity import Principal


class SessionWatch:
    """Stops the clusters that may no longer run, and knows each session's current run."""

    def __init__(self, backend, interval: float):
        self.backend = backend
        self.interval = interval
        self.running: dict[Principal, str | None] = {}
        self.starting = False  # whether the hub was starting a session when last asked
        self.outage = Outage("The Dask gateway", backend.log.warning)

    async def refresh(self) -> int | None:
        """Ask the hub for its running sessions; the time asked (ms), or None if it failed."""
        asked = timestamp()
        try:
            sessions = await asyncio.to_thread(self.backend.sessions.running)
        except httpx.HTTPError as error:
            self.backend.log.warning("Cannot list the hub's sessions: %s", error)
            return None
        self.running = {Principal(s.user, s.project): s.session for s in sessions}
        self.starting = any(s.starting for s in sessions)
        return asked

    def session_id(self, principal: Principal) -> str | None:
        return self.running.get(principal)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.check()
                self.outage.back()
            except asyncio.CancelledError:
                raise
            except DatabaseUnavailable as error:
                self.outage.failed(error)
            except Exception as error:
                self.backend.log.warning("Checking clusters failed", exc_info=error)

    async def check(self) -> None:
        asked = await self.refresh()
        if asked is not None:
            self.backend.sessions_seen(set(self.running))
        in_force = await asyncio.to_thread(self.backend.registry.in_force)
        for cluster, holds in await self.backend.watched_clusters():
            reason, failed = self.why_stop(cluster, asked, in_force, holds)
            if reason is not None:
                await self.backend.stop_for(cluster.name, reason, failed)

    def why_stop(
        self, cluster, asked: int | None, in_force: dict, holds: bool
    ) -> tuple[str | None, bool]:
        principal = cluster.principal
        if (principal.user, principal.project) not in in_force:
            return "the membership or the project is no longer in force", False
        # Only a list asked for after the cluster began can show that its session is gone.
        if asked is not None and cluster.start_time < asked and principal not in self.running:
            return "its session stopped", False
        if not holds:
            return "its scheduler exited or its sandbox no longer holds", True
        return None, False
