"""The audit service: the one process that writes the audit log and holds its signing key.

It listens on the hub's address, beside the hub, so that both the hub and the notebook
sessions reach it. The hub, the registry, the airlock and the Dask gateway send events with
the ingest token and may record any action; a notebook server sends with its own hub token,
and its events are attributed to the session that token belongs to. An event is answered only
once it is on disk; when the log cannot be written the answer is 503, and the sender refuses
what it was about to do.
Auditors read the log through the console's pages (`console`) under the same prefix.

Run by `enclave up`: `python -m enclave_hub.audit.service --config <site.yaml>`.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import time

from tornado import httpserver, web
from tornado.ioloop import PeriodicCallback

from ..core.client_address import client_address
from ..core.service_auth import service_app
from ..core.service_process import run_service, stop_signal
from ..core.services import AUDIT, AUDIT_EVENTS_PATH
from ..core.site_config import SiteConfig
from ..core.site_secrets import load_secrets
from . import AuditLog, KeyNotTrusted, LogUnwritable, NotConsistent
from .attribution import ActiveSessions, HubUnavailable, TokenResolver, session_identity
from .console import IntegrityCheck, console_handlers
from .events import BadEvent, platform_event, session_event
from .httputil import request_token
from .index import LogIndex
from .query import records
from .ratelimit import FailureLimiter

MAX_BODY = 2 * 1024 * 1024
MAX_BATCH = 1000  # events in one request


class AuditService:
    """The log, and what the service knows beside it: running sessions, failed-login counts."""

    def __init__(
        self,
        log: AuditLog,
        ingest_token: str,
        resolver: TokenResolver,
        failed_logins: FailureLimiter,
    ):
        self.log = log
        self.ingest_token = ingest_token
        self.resolver = resolver
        self.sessions = ActiveSessions()
        self.failed_logins = failed_logins
        self.index = LogIndex(log.store.read)
        for record in records(log.folder):
            self.sessions.observe(record)
            self.index.add(record["seq"], record)

    def is_platform(self, token: str) -> bool:
        return hmac.compare_digest(token.encode(), self.ingest_token.encode())

    async def record(self, event: dict) -> int | None:
        """Append once durable; None when a failed login is only counted (rate limit)."""
        (outcome,) = await self.record_many([event])
        if isinstance(outcome, LogUnwritable):
            raise outcome
        return outcome

    async def record_many(self, events: list[dict]) -> list[int | LogUnwritable | None]:
        """Append events in one write and one fsync: each one's number once durable, None for
        a failed login only counted, or the LogUnwritable that refused it."""
        now = time.monotonic()
        kept = [i for i, event in enumerate(events) if not self._counted_only(event, now)]
        stamped = [{**events[i], "time": time.time()} for i in kept]
        futures = self.log.submit_many(stamped) if stamped else []
        if futures:  # the store settles a batch's futures in order: the last settles them all
            await asyncio.wait([asyncio.wrap_future(futures[-1])])
        outcomes: list[int | LogUnwritable | None] = [None] * len(events)
        for index, event, future in zip(kept, stamped, futures, strict=True):
            failure = future.exception()
            if failure is not None:
                outcomes[index] = failure
                continue
            seq = future.result()
            self.sessions.observe(event)
            self.index.add(seq, event)
            outcomes[index] = seq
        return outcomes

    def _counted_only(self, event: dict, now: float) -> bool:
        return (
            event["action"] == "login.failed"
            and event.get("outcome") != "suppressed"
            and not self.failed_logins.admit(str(event.get("source", "")), now)
        )

    async def report_suppressed_logins(self) -> None:
        for suppressed in self.failed_logins.ended(time.monotonic()):
            event = {
                "actor": "(many)",
                "action": "login.failed",
                "outcome": "suppressed",
                "count": suppressed.count,
                "detail": {"sources": suppressed.sources},
            }
            try:
                await self.record(event)
            except LogUnwritable:
                continue  # the count is lost with the disk; logins are refused meanwhile


class IngestHandler(web.RequestHandler):
    """POST an event: 201 with its sequence number once it is on disk. POST a JSON array of
    events (a sender's batch, `MAX_BATCH` at most): 200 with a result for each, in order, each
    given once that event is on disk: `{"seq": n}`, or `{"error": why, "status": code}` with
    the code a single event would have had."""

    def write_error(self, status_code: int, **kwargs) -> None:
        self.finish({"error": self._reason})

    async def post(self) -> None:
        service: AuditService = self.settings["audit"]
        token = request_token(self)
        try:
            body = json.loads(self.request.body or b"null")
        except ValueError:
            raise web.HTTPError(400, reason="the body is not JSON") from None
        platform = bool(token) and service.is_platform(token)
        batch = isinstance(body, list)
        if batch and not 0 < len(body) <= MAX_BATCH:
            raise web.HTTPError(400, reason=f"a batch holds 1 to {MAX_BATCH} events")
        identity = None if platform else await self._session(service, token)
        answers = await self._record_all(service, body if batch else [body], identity)
        if batch:
            self.finish({"results": [{**result, "status": status} for status, result in answers]})
            return
        ((status, result),) = answers
        if "error" in result:
            raise web.HTTPError(status, reason=result["error"])
        self.set_status(status)
        self.finish(result)

    async def _record_all(
        self, service: AuditService, bodies: list, identity
    ) -> list[tuple[int, dict]]:
        """Check each event and record the good ones in one write: for each, its status code,
        and its sequence number or the error."""
        checked: list[dict | BadEvent] = []
        for body in bodies:
            try:
                checked.append(self._event(body, identity))
            except BadEvent as error:
                checked.append(error)
        good = [event for event in checked if isinstance(event, dict)]
        try:
            outcomes = iter(await service.record_many(good))
        except LogUnwritable as error:  # the log is closing: nothing of them was queued
            raise web.HTTPError(503, reason=str(error)) from None
        answers = []
        for event in checked:
            outcome = event if isinstance(event, BadEvent) else next(outcomes)
            if isinstance(outcome, BadEvent):
                answers.append((400, {"error": str(outcome)}))
            elif isinstance(outcome, LogUnwritable):
                answers.append((503, {"error": str(outcome)}))
            else:
                answers.append((201 if outcome is not None else 202, {"seq": outcome}))
        return answers

    def _event(self, body: object, identity) -> dict:
        """The event to record: a platform's as sent (checked), a session's attributed to it."""
        if identity is None:
            return platform_event(body)
        return session_event(body, identity, self._address())

    async def _session(self, service: AuditService, token: str):
        try:
            server = await service.resolver.server_of(token) if token else None
        except HubUnavailable as error:
            raise web.HTTPError(503, reason=f"cannot check the session's token: {error}") from None
        identity = session_identity(server, service.sessions)
        if identity is None:
            raise web.HTTPError(403, reason="the token is not that of a running session")
        return identity

    def _address(self) -> str:
        return client_address(self.request, str(self.settings["site"].sessions.hub_address))


def make_app(service: AuditService, site: SiteConfig, service_token: str) -> web.Application:
    return service_app(
        site,
        AUDIT,
        service_token,
        [(AUDIT_EVENTS_PATH, IngestHandler), *console_handlers(AUDIT.prefix)],
        audit=service,
        integrity=IntegrityCheck(site, service.log.public_key),
    )


async def serve(site: SiteConfig) -> None:
    secrets = load_secrets(site.state_dir)
    site.audit_key_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    pinned = site.audit.key_fingerprint
    try:
        log = AuditLog(
            site.audit_dir, site.audit_key_path, pinned=pinned, witness=site.audit.witness_dir
        )
    except (KeyNotTrusted, NotConsistent, LogUnwritable) as error:
        raise SystemExit(f"The audit service cannot start: {error}") from None
    if pinned is None:
        print(
            f"Warning: audit.key_fingerprint is not set; pin {log.fingerprint} in the site "
            "configuration, or the log cannot be verified",
            flush=True,
        )
    resolver = TokenResolver(site.hub_api_url)
    failed_logins = FailureLimiter(site.audit.failed_login_limit, site.audit.failed_login_total)
    service = AuditService(log, secrets.audit_ingest_token, resolver, failed_logins)
    app = make_app(service, site, secrets.audit_service_token)
    server = httpserver.HTTPServer(app, max_body_size=MAX_BODY)
    server.listen(site.audit.port, address=site.listen_address)
    reporter = PeriodicCallback(service.report_suppressed_logins, 10_000)
    reporter.start()
    stopped = stop_signal()
    print(f"The audit service is listening at {site.audit_url}{AUDIT.prefix}", flush=True)
    await stopped.wait()
    reporter.stop()
    server.stop()
    await service.report_suppressed_logins()
    await resolver.close()
    log.close()  # signs a last checkpoint
    print("The audit service stopped; its last checkpoint is signed.", flush=True)


def main(argv: list[str] | None = None) -> None:
    run_service("enclave-audit-service", serve, argv)


if __name__ == "__main__":
    main()
