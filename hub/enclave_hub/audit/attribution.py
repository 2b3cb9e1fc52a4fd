"""Which session sent an event: the user and project its token belongs to, and its run.

A notebook server authenticates with the token the hub gave it. The hub says whose token it
is and which server it may reach; the log itself says which run of that server is current
(the last `session.start` the hub recorded for it). The body of an event is never consulted.
"""

from __future__ import annotations

import hashlib
import time

import httpx

from ..core.hub_api import session_server
from .events import SessionIdentity

ENDED = ("session.stop", "session.failure")
REMEMBER_TOKENS_FOR = 600.0


class HubUnavailable(Exception):
    """The hub cannot be asked who holds a token right now; the sender should try again."""


class ActiveSessions:
    """The run of each user's project session that is going on, as the log records it."""

    def __init__(self) -> None:
        self._current: dict[tuple[str, str], str] = {}

    def observe(self, record: dict) -> None:
        action, session = record.get("action"), record.get("session")
        key = (record.get("actor"), record.get("project"))
        if action == "session.start" and session:
            self._current[key] = session
        elif action in ENDED and self._current.get(key) == session:
            del self._current[key]

    def current(self, user: str, project: str) -> str | None:
        return self._current.get((user, project))


class TokenResolver:
    """Whose session a token is, asked of the hub and remembered for a while.

    Remembering lets sessions go on recording while the hub restarts.
    """

    def __init__(self, hub_api_url: str, remember_for: float = REMEMBER_TOKENS_FOR):
        self.hub_api_url = hub_api_url.rstrip("/")
        self.remember_for = remember_for
        self._known: dict[str, tuple[float, tuple[str, str] | None]] = {}
        self._client = httpx.AsyncClient(timeout=10)

    async def server_of(self, token: str) -> tuple[str, str] | None:
        """(user, server name) for a notebook server's token; None for any other token."""
        digest = hashlib.sha256(token.encode()).hexdigest()
        now = time.monotonic()
        known = self._known.get(digest)
        if known is not None and known[0] > now:
            return known[1]
        try:
            reply = await self._client.get(
                f"{self.hub_api_url}/user", headers={"Authorization": f"token {token}"}
            )
        except httpx.HTTPError as error:
            raise HubUnavailable(f"the hub cannot be reached: {error}") from None
        if reply.status_code in (401, 403, 404):
            return None
        if reply.status_code != 200:
            raise HubUnavailable(f"the hub answered {reply.status_code}")
        server = session_server(reply.json())
        self._known[digest] = (now + self.remember_for, server)
        return server

    async def close(self) -> None:
        await self._client.aclose()


def session_identity(
    server: tuple[str, str] | None, sessions: ActiveSessions
) -> SessionIdentity | None:
    """The running session a server's token speaks for, if any."""
    if server is None:
        return None
    user, project = server
    run = sessions.current(user, project)
    return None if run is None else SessionIdentity(user, project, run)
