"""The audit client: how the hub (and later the other services) record events.

`record` returns only once the audit service has the event on disk. When it cannot, it raises
`AuditRefused` with the reason, and the caller refuses the action it was about to take.
"""

from __future__ import annotations

import httpx

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

    async def record(self, **event: object) -> int | None:
        """Record an event (unset fields left out); its sequence number once durable."""
        body = {key: value for key, value in event.items() if value is not None}
        try:
            async with httpx.AsyncClient(timeout=self._timeout) as client:
                reply = await client.post(self.events_url, json=body, headers=self._headers)
        except httpx.HTTPError as error:
            raise AuditRefused(f"the audit service cannot be reached ({error})", True) from None
        if reply.status_code not in (201, 202):
            try:
                reason = reply.json().get("error") or reply.reason_phrase
            except ValueError:
                reason = reply.reason_phrase
            raise AuditRefused(reason, retryable=reply.status_code == 503)
        return reply.json().get("seq")

    async def record_best_effort(self, log, **event: object) -> None:
        """Record an event that must not block what it describes (a stop, a logout)."""
        try:
            await self.record(**event)
        except AuditRefused as error:
            log.error("Audit event %s was not recorded: %s", event.get("action"), error)
