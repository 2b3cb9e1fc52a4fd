"""The audit client: how the hub, the registry, the airlock and the Dask gateway record events.

`record` returns only once the audit service has the event on disk. When it cannot, it raises
`AuditRefused` with the reason, and the caller refuses the action it was about to take.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import httpx

from .services import AUDIT_EVENTS_PATH
from .site_secrets import load_secrets

if TYPE_CHECKING:
    from .site_config import SiteConfig

TIMEOUT = 15.0


class AuditRefused(Exception):
    """The event could not be recorded; an action that requires audit must not go ahead."""

    def __init__(self, reason: str, retryable: bool):
        super().__init__(reason)
        self.retryable = retryable  # the service is unreachable or unavailable, for now


class AuditClient:
    """Sends events with the platform's ingest token."""

    def __init__(self, events_url: str, token: str, timeout: float = TIMEOUT):
        self.events_url = events_url
        self._headers = {"Authorization": f"token {token}"}
        self._timeout = timeout
        self._connections: tuple[asyncio.AbstractEventLoop, httpx.AsyncClient] | None = None

    def __deepcopy__(self, memo: dict) -> AuditClient:
        # JupyterHub copies each spawner's configuration; all of them share one client.
        return self

    def _client(self) -> httpx.AsyncClient:
        """One kept-alive client per event loop: every cell and event reuses its connection."""
        loop = asyncio.get_running_loop()
        if self._connections is None or self._connections[0] is not loop:
            self._connections = (loop, httpx.AsyncClient(timeout=self._timeout))
        return self._connections[1]

    async def record(self, **event: object) -> int | None:
        """Record an event (unset fields left out); its sequence number once durable."""
        try:
            reply = await self._client().post(
                self.events_url, json=_body(event), headers=self._headers
            )
        except httpx.HTTPError as error:
            raise AuditRefused(f"the audit service cannot be reached ({error})", True) from None
        return _sequence_number(reply)

    def record_sync(self, event: dict) -> int | None:
        """`record`, for code that does not run in an event loop (the command line)."""
        try:
            reply = httpx.post(
                self.events_url, json=_body(event), headers=self._headers, timeout=self._timeout
            )
        except httpx.HTTPError as error:
            raise AuditRefused(f"the audit service cannot be reached ({error})", True) from None
        return _sequence_number(reply)

    async def record_best_effort(self, log, **event: object) -> None:
        """Record an event that must not block what it describes (a stop, a logout)."""
        try:
            await self.record(**event)
        except AuditRefused as error:
            log.error("Audit event %s was not recorded: %s", event.get("action"), error)


def _body(event: dict) -> dict:
    return {key: value for key, value in event.items() if value is not None}


def _sequence_number(reply: httpx.Response) -> int | None:
    """The recorded event's number, or AuditRefused with the service's reason."""
    if reply.status_code not in (201, 202):
        try:
            reason = reply.json().get("error") or reply.reason_phrase
        except ValueError:
            reason = reply.reason_phrase
        raise AuditRefused(reason, retryable=reply.status_code == 503)
    return reply.json().get("seq")


def site_audit_client(site: SiteConfig, token: str) -> AuditClient:
    """A client of the deployment's audit service, sending with `token`."""
    return AuditClient(f"{site.audit_url}{AUDIT_EVENTS_PATH}", token)


def platform_recorder(site: SiteConfig):
    """Records through the audit service as the platform (the hub's services do); the
    credential is read when first needed, so that bad input is refused before anything else is
    touched."""
    clients: list[AuditClient] = []

    def record(event: dict) -> None:
        if not clients:
            clients.append(site_audit_client(site, load_secrets(site.state_dir).audit_ingest_token))
        clients[0].record_sync(event)

    return record
