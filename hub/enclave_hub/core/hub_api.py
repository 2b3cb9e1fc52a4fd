"""The hub's REST API as Enclave's services use it, and the rule that tells a session's token
from a person's.

The registry service lists running sessions, stops them and asks the hub to reflect the
registry into its groups and roles (`HubSessions`); the audit service, the airlock and the Dask
gateway ask the hub whose token they were sent and admit only a notebook server's own
(`session_server`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import httpx

SERVER_SCOPE = re.compile(r"^access:servers!server=([^/]+)/(.+)$")
TIMEOUT = 30.0
REFLECT_ACCESS_PATH = "/enclave/access"  # under the hub's API


@dataclass(frozen=True)
class SavedSession:
    """What a spawner keeps of a session's run in the hub's database, across hub restarts; the
    registry reads it back to stop sessions whose access was withdrawn."""

    session_id: str
    datasets: tuple[str, ...]  # as mounted when it started

    def to_state(self) -> dict:
        return {"session_id": self.session_id, "datasets": list(self.datasets)}

    @classmethod
    def from_state(cls, state: dict) -> SavedSession:
        return cls(state.get("session_id", ""), tuple(state.get("datasets", ())))


@dataclass(frozen=True)
class RunningSession:
    user: str
    project: str
    datasets: tuple[str, ...]  # as mounted when it started
    session: str | None
    starting: bool = False  # still being spawned


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
                saved = SavedSession.from_state(server.get("state") or {})
                found.append(
                    RunningSession(
                        user=user["name"],
                        project=name,
                        datasets=saved.datasets,
                        session=saved.session_id or None,
                        starting=server.get("pending") == "spawn",
                    )
                )
        return found

    def run_of(self, user: str, project: str) -> str | None:
        """The run of `user`'s session in `project`, as the hub's spawner recorded it; None
        when the hub cannot say."""
        try:
            running = self.running()
        except httpx.HTTPError:
            return None
        return next((s.session for s in running if (s.user, s.project) == (user, project)), None)

    def reflect_access(self) -> list[str]:
        """Have the hub re-apply every user's project groups and roles; who changed."""
        reply = self.http.post(REFLECT_ACCESS_PATH)
        reply.raise_for_status()
        return reply.json()["changed"]

    def stop(self, session: RunningSession) -> None:
        reply = self.http.delete(f"/users/{session.user}/servers/{session.project}")
        if reply.status_code not in (202, 204, 404):
            reply.raise_for_status()


def session_server(model: dict) -> tuple[str, str] | None:
    """(user, server name) if the hub's `/user` model is that of a notebook server's token."""
    if model.get("kind") != "user":
        return None
    if f"tokens!user={model.get('name')}" in model.get("scopes", []):
        return None  # a person's own token (it manages tokens), never a session's
    servers = {m.groups() for s in model.get("scopes", []) if (m := SERVER_SCOPE.match(s))}
    servers = {s for s in servers if s[0] == model.get("name")}
    return servers.pop() if len(servers) == 1 else None
