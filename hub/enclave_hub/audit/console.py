"""The auditor's console: web pages (and a JSON API) of the audit service.

Auditors sign in through the hub (OAuth): only users whose groups give them
`access:services!service=enclave-audit` get in, so a researcher is refused by the hub itself.
Pages: the log filtered by user, project, dataset, type and time; one session's timeline;
who mounted a dataset in a period; the log's integrity. Each reading is itself recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import UTC, datetime
from pathlib import Path

from tornado import web

from ..core.client_address import client_address
from ..core.pages import frame_values, page_templates
from ..core.service_auth import SignedInHandler
from ..core.site_config import SiteConfig
from . import LogUnwritable
from .checkpoints import PUBLIC_KEY_FILE, load_public_key
from .query import Filters, parse_time
from .verify import Verdict, verify_log

TEMPLATES = Path(__file__).with_name("templates")
SHOWN = 500
INTEGRITY_FRESH_FOR = 10.0
FILTER_FIELDS = ("user", "project", "dataset", "type", "since", "until", "session")


def format_time(moment: float | None) -> str:
    if moment is None:
        return ""
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


PAGES = page_templates(TEMPLATES)
PAGES.filters["when"] = format_time


class IntegrityCheck:
    """The verdict of `verify` on the live log, recomputed when older than a few seconds."""

    def __init__(self, folder: Path):
        self.folder = folder
        self._verdict: Verdict | None = None
        self._checked_at = 0.0
        self._lock = asyncio.Lock()

    async def verdict(self) -> tuple[Verdict, float]:
        async with self._lock:
            if self._verdict is None or time.time() - self._checked_at > INTEGRITY_FRESH_FOR:
                key = load_public_key(self.folder / PUBLIC_KEY_FILE)
                self._verdict = await asyncio.to_thread(verify_log, self.folder, key)
                self._checked_at = time.time()
            return self._verdict, self._checked_at


class ConsoleHandler(SignedInHandler):
    """A page or API call for auditors; every one is recorded as `audit.read`."""

    @property
    def site(self) -> SiteConfig:
        return self.settings["site"]

    def filters(self) -> tuple[Filters, str | None]:
        """The filters of the query string; a bad time is a 400 that names it."""
        args = {name: self.get_argument(name, "").strip() or None for name in FILTER_FIELDS}
        try:
            since = parse_time(args["since"]) if args["since"] else None
            until = parse_time(args["until"]) if args["until"] else None
        except ValueError as error:
            raise web.HTTPError(400, reason=str(error)) from None
        filters = Filters(
            user=args["user"],
            project=args["project"],
            dataset=args["dataset"],
            type=args["type"],
            since=since,
            until=until,
        )
        return filters, args["session"]

    async def records(self, filters: Filters, session: str | None = None) -> list[dict]:
        index = self.settings["audit"].index
        return await asyncio.to_thread(index.search, filters, session, SHOWN)

    async def note_reading(self) -> None:
        """Record that this auditor read the log (best effort: reading is never refused)."""
        event = {
            "actor": self.current_user["name"],
            "action": "audit.read",
            "target": self.request.uri,
            "outcome": "ok",
            "source": client_address(self.request, str(self.site.sessions.hub_address)),
        }
        with contextlib.suppress(LogUnwritable):
            await self.settings["audit"].record(event)

    def page(self, template: str, **values) -> None:
        self.finish(
            PAGES.get_template(template).render(
                **frame_values(
                    "Audit",
                    self.hub_auth.hub_prefix,
                    self.current_user["name"],
                    self.site.platform_role(self.current_user.get("groups") or ()),
                ),
                prefix=self.hub_auth.base_url,
                **values,
            )
        )


class LogPage(ConsoleHandler):
    @web.authenticated
    async def get(self) -> None:
        filters, session = self.filters()
        found = await self.records(filters, session)
        verdict, checked = await self.settings["integrity"].verdict()
        await self.note_reading()
        self.page(
            "console.html",
            records=found,
            shown=SHOWN,
            args={n: self.get_argument(n, "") for n in FILTER_FIELDS},
            verdict=verdict,
            checked=checked,
        )


class SessionPage(ConsoleHandler):
    @web.authenticated
    async def get(self, session: str) -> None:
        events = list(reversed(await self.records(Filters(), session)))
        if not events:
            raise web.HTTPError(404, reason=f"no session '{session}' in the log")
        user, started = events[0].get("actor"), events[0].get("time")
        logins = await self.records(Filters(user=user, type="login", until=started))
        await self.note_reading()
        self.page("session.html", session=session, login=logins[:1], events=events, user_of=user)


class DatasetPage(ConsoleHandler):
    @web.authenticated
    async def get(self) -> None:
        filters, _ = self.filters()
        mounts = []
        if filters.dataset:
            wanted = Filters(
                dataset=filters.dataset, type="dataset", since=filters.since, until=filters.until
            )
            mounts = await self.records(wanted)
        await self.note_reading()
        self.page(
            "datasets.html",
            mounts=mounts,
            args={n: self.get_argument(n, "") for n in ("dataset", "since", "until")},
        )


class IntegrityPage(ConsoleHandler):
    @web.authenticated
    async def get(self) -> None:
        verdict, checked = await self.settings["integrity"].verdict()
        await self.note_reading()
        self.page("integrity.html", verdict=verdict, checked=checked)


class RecordsAPI(ConsoleHandler):
    """GET the matching records as JSON (newest first), for scripts of auditors."""

    @web.authenticated
    async def get(self) -> None:
        filters, session = self.filters()
        found = await self.records(filters, session)
        await self.note_reading()
        self.finish({"records": found, "limit": SHOWN})


def console_handlers(prefix: str) -> list[tuple]:
    return [
        (prefix, LogPage),
        (prefix + r"sessions/([A-Za-z0-9_-]+)", SessionPage),
        (prefix + "datasets", DatasetPage),
        (prefix + "integrity", IntegrityPage),
        (prefix + "api/records", RecordsAPI),
    ]
