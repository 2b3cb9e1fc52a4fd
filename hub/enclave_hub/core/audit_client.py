"""The audit client: how the hub, the registry, the airlock and the Dask gateway record events.

`record` returns only once the audit service has the event on disk. When it cannot, it raises
`AuditRefused` with the reason, and the caller refuses the action it was about to take. Events
recorded while requests are out go together in the next one (the service writes a batch with
one fsync), so many callers at once cost a request each only when they come one at a time.
"""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING

import aiohttp
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
IN_FLIGHT = 4  # requests out at once: the next batch travels while the last one is written
LINGER = 2.0  # seconds a sender keeps its connection for the next events
BATCH_BYTES = 1024 * 1024  # and about this much of them, so that a batch fits its body limit


class AuditClient:
    """Sends events with the platform's ingest token."""

    def __init__(self, events_url: str, token: str, timeout: float = TIMEOUT):
        self.events_url = events_url
        self._headers = {"Authorization": f"token {token}", "Content-Type": "application/json"}
        self._timeout = timeout
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiting: list[tuple[str, asyncio.Future]] = []  # each event as JSON
        self._senders: set[asyncio.Task] = set()  # held, so that none is collected
        self._sending = 0  # senders that will look at the queue again before they stop
        self._arrived = asyncio.Event()  # set when an event is queued
        self._idle = 0  # senders waiting for events

    def __deepcopy__(self, memo: dict) -> AuditClient:
        # JupyterHub copies each spawner's configuration; all of them share one client.
        return self

    async def record(self, **event: object) -> int | None:
        """Record an event (unset fields left out); its sequence number once durable."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # one queue per event loop
            self._loop, self._waiting, self._senders = loop, [], set()
            self._arrived, self._idle, self._sending = asyncio.Event(), 0, 0
        answer = loop.create_future()
        self._waiting.append((json.dumps(_body(event)), answer))
        self._arrived.set()
        # A sender that is idle, or busy and below the limit, takes the event: each looks at
        # the queue once more before it stops.
        if not self._idle and self._sending < IN_FLIGHT:
            self._sending += 1
            sender = asyncio.create_task(self._send_waiting())
            self._senders.add(sender)
            sender.add_done_callback(self._senders.discard)
        return await answer

    async def _send_waiting(self) -> None:
        """Send what waits, a batch at a time, on one kept-alive connection, until nothing
        has come for LINGER seconds (aiohttp's client: a request costs half of what it costs
        through httpx's)."""
        timeout = aiohttp.ClientTimeout(total=self._timeout)
        stopped = False
        try:
            async with aiohttp.ClientSession(timeout=timeout) as session:
                while await self._more_waiting():
                    batch = _next_batch(self._waiting)
                    del self._waiting[: len(batch)]
                    await self._send(session, batch)
                # No await since the queue was seen empty: no event came in between.
                self._sending -= 1
                stopped = True
        finally:
            if not stopped:
                self._sending -= 1

    async def _more_waiting(self) -> bool:
        """Whether events wait, after waiting up to LINGER seconds for some where none do."""
        if not self._waiting:
            self._arrived.clear()
            self._idle += 1
            try:
                await asyncio.wait_for(self._arrived.wait(), LINGER)
            except TimeoutError:
                pass  # one may have come as the wait ended: the caller looks again
            finally:
                self._idle -= 1
        return bool(self._waiting)

    async def _send(
        self, session: aiohttp.ClientSession, batch: list[tuple[str, asyncio.Future]]
    ) -> None:
        events = [event for event, _ in batch]
        body = f"[{','.join(events)}]" if len(events) > 1 else events[0]
        try:
            async with session.post(self.events_url, data=body, headers=self._headers) as reply:
                status, text, reason = reply.status, await reply.text(), reply.reason or ""
            results = _results(status, text, reason, len(events))
        except (aiohttp.ClientError, OSError, TimeoutError) as error:
            why = str(error) or type(error).__name__
            refused = AuditRefused(f"the audit service cannot be reached ({why})", True)
            results = [refused] * len(events)
        except Exception as error:  # every caller is answered, whatever went wrong
            results = [AuditRefused(f"the audit client failed: {error!r}", False)] * len(events)
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
        (result,) = _results(reply.status_code, reply.text, reply.reason_phrase, 1)
        if isinstance(result, AuditRefused):
            raise result
        return result

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


def _results(status: int, text: str, reason: str, count: int) -> list[int | AuditRefused | None]:
    """Each event's sequence number or refusal, from the service's answer to one event (201
    or 202 with its number) or to a batch (200 with a result for each)."""
    try:
        answer = json.loads(text)
    except ValueError:
        answer = {}
    if status not in (200, 201, 202):
        refused = AuditRefused(answer.get("error") or reason, retryable=status == 503)
        return [refused] * count
    try:
        if count == 1 and status != 200:
            return [answer.get("seq")]
        results = answer["results"]
        assert len(results) == count
        return [
            result.get("seq")
            if result["status"] in (201, 202)
            else AuditRefused(result["error"], retryable=result["status"] == 503)
            for result in results
        ]
    except (KeyError, TypeError, AssertionError, AttributeError):
        return [AuditRefused("the audit service's answer could not be read", True)] * count


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
