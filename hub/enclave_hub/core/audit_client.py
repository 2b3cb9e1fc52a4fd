"""The audit client: how the hub, the registry, the airlock and the Dask gateway record events.

`record` returns only once the audit service has the event on disk. When it cannot, it raises
`AuditRefused` with the reason, and the caller refuses the action it was about to take. Events
recorded while a request is out go together in the next one (the service writes a batch with
one fsync), so many callers at once cost a request each only when they come one at a time.
"""

from __future__ import annotations

import asyncio
import json
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


BATCH_EVENTS = 1000  # events in one request at most (the service's limit)
BATCH_BYTES = 1024 * 1024  # and about this much of them, so that a batch fits its body limit


class AuditClient:
    """Sends events with the platform's ingest token."""

    def __init__(self, events_url: str, token: str, timeout: float = TIMEOUT):
        self.events_url = events_url
        self._headers = {"Authorization": f"token {token}"}
        self._timeout = timeout
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: httpx.AsyncClient | None = None
        self._waiting: list[tuple[str, asyncio.Future]] = []  # each event as JSON
        self._sender: asyncio.Task | None = None

    def __deepcopy__(self, memo: dict) -> AuditClient:
        # JupyterHub copies each spawner's configuration; all of them share one client.
        return self

    def _in_this_loop(self) -> httpx.AsyncClient:
        """One kept-alive client and one queue per event loop."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._loop, self._client = loop, httpx.AsyncClient(timeout=self._timeout)
            self._waiting, self._sender = [], None
        assert self._client is not None
        return self._client

    async def record(self, **event: object) -> int | None:
        """Record an event (unset fields left out); its sequence number once durable."""
        self._in_this_loop()
        answer = asyncio.get_running_loop().create_future()
        self._waiting.append((json.dumps(_body(event)), answer))
        if self._sender is None:
            self._sender = asyncio.create_task(self._send_waiting())
        return await answer

    async def _send_waiting(self) -> None:
        """Send what waits, a batch at a time, until nothing does."""
        try:
            while self._waiting:
                batch = _next_batch(self._waiting)
                del self._waiting[: len(batch)]
                await self._send(batch)
        finally:
            self._sender = None

    async def _send(self, batch: list[tuple[str, asyncio.Future]]) -> None:
        events = [event for event, _ in batch]
        body = f"[{','.join(events)}]" if len(events) > 1 else events[0]
        headers = {**self._headers, "Content-Type": "application/json"}
        try:
            reply = await self._in_this_loop().post(self.events_url, content=body, headers=headers)
            results = _results(reply, len(events))
        except httpx.HTTPError as error:
            refused = AuditRefused(f"the audit service cannot be reached ({error})", True)
            results = [refused] * len(events)
        except AuditRefused as refused:  # the whole request was refused
            results = [refused] * len(events)
        for (_, answer), result in zip(batch, results, strict=True):
            if answer.done():
                continue  # its caller was cancelled
            if isinstance(result, AuditRefused):
                answer.set_exception(result)
            else:
                answer.set_result(result)

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


def _next_batch(waiting: list[tuple[str, asyncio.Future]]) -> list:
    """The first events waiting, up to BATCH_EVENTS and about BATCH_BYTES (one at least)."""
    size = 0
    for count, (event, _) in enumerate(waiting[:BATCH_EVENTS]):
        size += len(event)
        if count and size > BATCH_BYTES:
            return waiting[:count]
    return waiting[:BATCH_EVENTS]


def _results(reply: httpx.Response, count: int) -> list[int | AuditRefused | None]:
    """Each event's sequence number or refusal: a batch's `results`, or one event's answer."""
    if count == 1:
        try:
            return [_sequence_number(reply)]
        except AuditRefused as refused:
            return [refused]
    if reply.status_code != 200:
        _sequence_number(reply)  # raises AuditRefused with the service's reason
    try:
        results = reply.json()["results"]
        assert len(results) == count
        return [
            result.get("seq")
            if result["status"] in (201, 202)
            else AuditRefused(result["error"], retryable=result["status"] == 503)
            for result in results
        ]
    except (ValueError, KeyError, TypeError, AssertionError):
        raise AuditRefused("the audit service's answer could not be read", True) from None


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
