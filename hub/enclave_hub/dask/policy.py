"""What the gateway enforces on every cluster, whatever runs it: sandboxes on one machine
(`backend.py`) or pods on Kubernetes (`kube_backend.py`).

A cluster belongs to a session (`identity.Principal`) of a project in force; it may grow only
within the project's limits (`limits.py`), lives only as long as its session
(`lifetimes.py`), and its start and stop are audit events (a cluster is not started unless
its start is recorded). A backend mixes this in before dask-gateway's own backend class and
says which clusters it runs (`policy_clusters`, `policy_cluster`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass

from aiohttp import web
from dask_gateway_server.backends.base import PublicException
from traitlets import Any as AnyTrait
from traitlets import Dict, Unicode
from traitlets.config import LoggingConfigurable

from ..core.audit_client import AuditRefused, site_audit_client
from ..core.hub_api import HubSessions
from ..core.registry import ActiveProject, DatabaseUnavailable, site_registry
from .identity import Principal
from .lifetimes import SessionWatch
from .limits import LimitExceeded, Usage, allowed_workers, check_growth
from .options import cluster_options


@dataclass(frozen=True)
class ClusterView:
    """What the policy reads of one cluster that is meant to run."""

    name: str
    principal: Principal
    config: Mapping
    workers: int  # as asked for
    start_time: int  # ms


def worker_size(config: Mapping) -> tuple[int, int]:
    """A cluster's worker cores and memory (bytes), from its configuration."""
    return int(config["worker_cores"]), int(config["worker_memory"])


class ProjectPolicy(LoggingConfigurable):
    """Projects' limits, session-bound lifetimes and audit events for a gateway backend."""

    site = AnyTrait(help="the SiteConfig of this deployment").tag(config=True)
    hub_api_token = Unicode(help="the gateway's own token at the hub").tag(config=True)
    audit_token = Unicode(help="the token the gateway records audit events with").tag(config=True)
    stop_reasons = Dict(help="why the gateway stops a cluster, by name, for its audit event")

    def policy_clusters(self) -> list[ClusterView]:
        """The clusters that run or start, each as the policy reads it."""
        raise NotImplementedError

    def policy_cluster(self, name: str) -> ClusterView | None:
        """One of `policy_clusters`, by name."""
        return next((c for c in self.policy_clusters() if c.name == name), None)

    async def watched_clusters(self) -> list[tuple[ClusterView, bool]]:
        """The clusters to keep to their sessions, each with whether it still holds."""
        return [(cluster, True) for cluster in self.policy_clusters()]

    def sessions_seen(self, running: set[Principal]) -> None:
        """The sessions running now, as the hub last listed them (prepared clusters)."""

    def start_policy(self) -> None:
        site = self.site
        self.registry = site_registry(site, writable=False)
        self.audit = site_audit_client(site, self.audit_token)
        self.sessions = HubSessions(site.hub_api_url, self.hub_api_token)
        self.watch = SessionWatch(self, site.dask.check_interval)
        self.watch_task = asyncio.ensure_future(self.watch.run())

    async def stop_policy(self) -> None:
        if hasattr(self, "watch_task"):
            self.watch_task.cancel()
            await asyncio.gather(self.watch_task, return_exceptions=True)

    # -- who and what -----------------------------------------------------------------------

    def project_of(self, username: str) -> tuple[Principal, ActiveProject]:
        """The principal and its project as in force now; PublicException if it is not."""
        principal = Principal.parse(username)
        try:
            project = self.registry.membership(principal.user, principal.project)
        except DatabaseUnavailable as error:
            raise PublicException(str(error)) from None
        if project is None:
            raise PublicException(
                f"{principal.user} may not use project {principal.project} now: the "
                "membership or the project is not in force"
            )
        return principal, project

    def limits_of(self, project: ActiveProject):
        return self.site.sessions.profiles[project.profile].dask

    async def get_cluster_options(self, user):
        try:
            principal, project = self.project_of(user.name)
        except PublicException as error:
            raise web.HTTPForbidden(reason=str(error)) from None
        return cluster_options(self.limits_of(project), principal.project)

    # -- limits -----------------------------------------------------------------------------

    def usage_beside(self, cluster_name: str, project: str) -> Usage:
        """What the project's other clusters hold (their asked-for workers)."""
        total = Usage()
        for other in self.policy_clusters():
            if other.name != cluster_name and other.principal.project == project:
                total += Usage.of(other.workers, *worker_size(other.config))
        return total

    def check_workers(self, cluster_name: str, username: str, config: Mapping, count: int):
        """LimitExceeded if `count` workers in this cluster would pass the project's limits."""
        principal, project = self.project_of(username)
        others = self.usage_beside(cluster_name, principal.project)
        wanted = Usage.of(count, *worker_size(config))
        check_growth(self.limits_of(project), principal.project, wanted, others, project.profile)

    def check_start(self, username: str, options: Mapping, config: Mapping) -> None:
        """Refuse a new cluster whose first workers (its `workers` option) pass the limits."""
        try:
            self.check_workers("", username, config, options["workers"])
        except LimitExceeded as error:
            raise PublicException(f"Starting with {options['workers']} workers {error}") from None

    async def forward_message_to_scheduler(self, cluster, msg: dict) -> None:
        """Refuse a scale past the limits; keep adaptive scaling within them."""
        if msg.get("op") == "scale":
            try:
                self.check_workers(cluster.name, cluster.username, cluster.config, msg["count"])
            except LimitExceeded as error:
                raise PublicException(f"Scaling to {msg['count']} workers {error}") from None
        elif msg.get("op") == "adapt":
            principal, project = self.project_of(cluster.username)
            limits = self.limits_of(project)
            cores, memory = worker_size(cluster.config)
            others = self.usage_beside(cluster.name, principal.project)
            most = allowed_workers(limits, cores, memory, others)
            if (msg.get("minimum") or 0) > most:
                raise PublicException(
                    f"Adapting with at least {msg['minimum']} workers refused: project "
                    f"{principal.project} has room for {most} more in this cluster"
                )
            msg = {**msg, "maximum": min(most, msg.get("maximum") or most)}
        await super().forward_message_to_scheduler(cluster, msg)

    async def on_cluster_heartbeat(self, cluster_name: str, msg: dict) -> None:
        """The scheduler asks for workers here too (adaptive scaling): cap what it asks."""
        cluster = self.policy_cluster(cluster_name)
        if cluster is not None:
            principal = cluster.principal
            project = self.registry.membership(principal.user, principal.project)
            most = 0
            if project is not None:
                others = self.usage_beside(cluster_name, principal.project)
                most = allowed_workers(
                    self.limits_of(project), *worker_size(cluster.config), others
                )
            msg = {**msg, "count": min(msg["count"], most)}
        await super().on_cluster_heartbeat(cluster_name, msg)

    # -- audit ------------------------------------------------------------------------------

    async def record_start(self, cluster_name: str, principal: Principal) -> None:
        """Record a cluster's start; PublicException (and no cluster) if that fails."""
        await self.watch.refresh()
        try:
            await self.audit.record(
                actor=principal.user,
                action="dask.cluster.start",
                target=cluster_name,
                project=principal.project,
                session=self.watch.session_id(principal),
                outcome="ok",
            )
        except AuditRefused as error:
            raise PublicException(
                f"the cluster cannot be audited, so it was not started: {error}"
            ) from None

    async def record_stop(self, cluster_name: str, username: str, failed: bool) -> None:
        principal = Principal.parse(username)
        await self.audit.record_best_effort(
            self.log,
            actor=principal.user,
            action="dask.cluster.stop",
            target=cluster_name,
            project=principal.project,
            outcome="failed" if failed else "stopped",
            reason=self.stop_reasons.pop(cluster_name, None),
        )

    async def stop_for(self, cluster_name: str, reason: str, failed: bool = False) -> None:
        self.stop_reasons[cluster_name] = reason
        self.log.info("Stopping cluster %s: %s", cluster_name, reason)
        await self.stop_cluster(cluster_name, failed=failed)
