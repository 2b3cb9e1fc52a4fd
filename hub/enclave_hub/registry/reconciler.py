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
from datetime import datetime

from ..core.hub_api import HubSessions, RunningSession
from ..core.registry import ActiveProject, Registry, now_utc


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
