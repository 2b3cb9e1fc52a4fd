"""Making running sessions follow the registry.

A session may run while its user's membership and its project are in force and every dataset
it mounted is still granted. The reconciler compares the hub's running sessions with the
registry and stops each one that no longer may run, recording why in the audit log; the hub
revokes the session's token as it stops it, and the spawner refuses a new start.

After each pass the registry service asks the hub to reflect the registry into its groups and
roles again (`HubSessions.reflect_access`, served by `enclave_hub.hub_access`): tokens lose the
scopes of a revoked project, and a new member's gain those of the new one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import httpx

from .registry import ActiveProject, Registry, now_utc

TIMEOUT = 30.0
REFLECT_ACCESS_PATH = "/enclave/access"  # under the hub's API


@dataclass(frozen=True)
class RunningSession:
    user: str
    project: str
    datasets: tuple[str, ...]  # as mounted when it started
    session: str | None


class HubSessions:
    """The hub's REST API, as far as the reconciler needs it (with the registry's token)."""

    def __init__(self, hub_api_url: str, token: str):
        self.http = httpx.Client(
            base_url=hub_api_url, headers={"Authorization": f"token {token}"}, timeout=TIMEOUT
        )

    def running(self) -> list[RunningSession]:
        users = self.http.get("/users", params={"state": "active", "include_stopped_servers": 0})
        users.raise_for_status()
        found = []
        for user in users.json():
            for name, server in (user.get("servers") or {}).items():
                state = server.get("state") or {}
                found.append(
                    RunningSession(
                        user=user["name"],
                        project=name,
                        datasets=tuple(state.get("datasets", ())),
                        session=state.get("session_id"),
                    )
                )
        return found

    def reflect_access(self) -> list[str]:
        """Have the hub re-apply every user's project groups and roles; who changed."""
        reply = self.http.post(REFLECT_ACCESS_PATH)
        reply.raise_for_status()
        return reply.json()["changed"]

    def stop(self, session: RunningSession) -> None:
        reply = self.http.delete(f"/users/{session.user}/servers/{session.project}")
        if reply.status_code not in (202, 204, 404):
            reply.raise_for_status()


def why_stop(session: RunningSession, allowed: ActiveProject | None) -> str | None:
    """The reason a running session may no longer run, or None."""
    if allowed is None:
        return "the membership or the project is no longer in force"
    withdrawn = sorted(set(session.datasets) - set(allowed.datasets))
    if withdrawn:
        return f"dataset grant withdrawn: {', '.join(withdrawn)}"
    return None


def reconcile(
    registry: Registry,
    hub: HubSessions,
    record: Callable[[dict], object],
    now: datetime | None = None,
) -> list[tuple[RunningSession, str]]:
    """Stop every session the registry no longer allows; return what was stopped and why."""
    allowed = registry.in_force(now or now_utc())
    stopped = []
    for session in hub.running():
        reason = why_stop(session, allowed.get((session.user, session.project)))
        if reason is None:
            continue
        record(
            {
                "actor": "registry",
                "action": "session.revoke",
                "target": f"{session.user}/{session.project}",
                "project": session.project,
                "session": session.session,
                "outcome": "stopping",
                "reason": reason,
            }
        )
        hub.stop(session)
        stopped.append((session, reason))
    return stopped
