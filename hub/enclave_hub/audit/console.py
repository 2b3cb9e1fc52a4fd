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
from pathlib import Path
from urllib.parse import urlencode

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from tornado import web

from ..core.client_address import client_address
from ..core.pages import FramedPages, page_templates
from ..core.service_auth import SignedInHandler
from ..core.site_config import SiteConfig
from . import LogUnwritable
from .query import Filters, parse_time
from .verify import Verdict, verify_log
from .witness import read_witnessed

SHOWN = 500  # records an API call returns at most
PAGE_SIZE = 100  # records a page of the console shows
INTEGRITY_FRESH_FOR = 10.0
FILTER_FIELDS = ("user", "project", "dataset", "type", "since", "until", "session")
# What the console's columns show of a record; the rest is its detail.
COLUMNS = ("seq", "time", "actor", "action", "target", "project", "outcome", "session")
# Fields that are the record's chain or the console's grouping, not what happened.
NOT_DETAIL = ("prev", "hash", "kind", "repeats", "first_time")
# Consecutive records that differ in nothing but these are shown as one row with a count.
REPEAT_FIELDS = ("seq", "time", "hash", "prev", "count")

PAGES = page_templates(Path(__file__).with_name("templates"))


def details(record: dict) -> list[tuple[str, str]]:
    """Everything a record says beyond its columns, as (name, text) pairs: the people added,
    the files inspected, the code run. Nested objects are flattened one level (the fields of
    `detail` under their own names)."""
    shown = []
    for name, value in record.items():
        if name in COLUMNS or name in NOT_DETAIL or _empty(value):
            continue
        if isinstance(value, dict):
            within = "" if name == "detail" else f"{name}."
            shown += [
                (within + key, _text(inner)) for key, inner in value.items() if not _empty(inner)
            ]
        else:
            shown.append((name, _text(value)))
    return shown


def _empty(value: object) -> bool:
    return value is None or value in ("", [], {})


def _text(value: object) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, list | tuple):
        return ", ".join(_text(item) for item in value)
    if isinstance(value, dict):
        return ", ".join(f"{key}: {_text(inner)}" for key, inner in value.items())
    return str(value)


def grouped(records: list[dict]) -> list[dict]:
    """Records in order with each run of repeats (the same act, again and again, as blocked
    DNS lookups are) folded into its first record, which carries `repeats` and `first_time`."""
    rows: list[dict] = []
    last_key = None
    for record in records:
        key = {k: v for k, v in record.items() if k not in REPEAT_FIELDS}
        if rows and key == last_key:
            rows[-1]["repeats"] += 1
            rows[-1]["first_time"] = record.get("time")
            continue
        last_key = key
        rows.append({**record, "repeats": 1, "first_time": record.get("time")})
    return rows


PAGES.filters["details"] = details


class IntegrityCheck:
    """The verdict of `verify` on the live log against the site's pinned key (or, where none
    is pinned yet, the service's own, never the one beside the log) and its witness,
    recomputed when older than a few seconds."""

    def __init__(self, site: SiteConfig, own_key: Ed25519PublicKey):
        self.site = site
        self.anchor = site.audit.key_fingerprint or own_key
        self._verdict: Verdict | None = None
        self._checked_at = 0.0
        self._lock = asyncio.Lock()

    def _verify(self) -> Verdict:
        witness = self.site.audit.witness_dir
        try:
            witnessed = read_witnessed(witness) if witness else []
        except (OSError, ValueError) as error:
            return Verdict(0, 0, 0, f"the witness cannot be read: {error}")
        return verify_log(self.site.audit_dir, self.anchor, witnessed=witnessed)

    async def verdict(self) -> tuple[Verdict, float]:
        async with self._lock:
            if self._verdict is None or time.time() - self._checked_at > INTEGRITY_FRESH_FOR:
                self._verdict = await asyncio.to_thread(self._verify)
                self._checked_at = time.time()
            return self._verdict, self._checked_at


class ConsoleHandler(FramedPages, SignedInHandler):
    """A page or API call for auditors; every one is recorded as `audit.read`."""

    pages = PAGES
    section = "Audit"

    @property
    def site(self) -> SiteConfig:
        return self.settings["site"]

    def filters(self) -> tuple[Filters, str | None]:
        """The filters of the query string; a bad time is a 400 that names it."""
        args = {name: self.get_argument(name, "").strip() or None for name in FILTER_FIELDS}
        times = {}
        for name in ("since", "until"):
            try:
                times[name] = parse_time(args[name]) if args[name] else None
            except ValueError as error:
                raise web.HTTPError(
                    400, f"{name.capitalize()}: {error} (write 2026-11-01 or 2026-11-01T09:00)"
                ) from None
        since, until = times["since"], times["until"]
        filters = Filters(
            user=args["user"],
            project=args["project"],
            dataset=args["dataset"],
            type=args["type"],
            since=since,
            until=until,
        )
        return filters, args["session"]

    async def records(
        self,
        filters: Filters,
        session: str | None = None,
        limit: int = SHOWN,
        before: int | None = None,
    ) -> list[dict]:
        index = self.settings["audit"].index
        return await asyncio.to_thread(index.search, filters, session, limit, before)

    def datasets_named(self) -> list[str]:
        return self.settings["audit"].index.values("dataset")

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


class LogPage(ConsoleHandler):
    @web.authenticated
    async def get(self) -> None:
        filters, session = self.filters()
        before = self.get_argument("before", "")
        if before and not before.isdigit():
            raise web.HTTPError(400, f"before: {before!r} is not a record number")
        found = await self.records(filters, session, PAGE_SIZE, int(before) if before else None)
        verdict, checked = await self.settings["integrity"].verdict()
        await self.note_reading()
        args = {n: self.get_argument(n, "") for n in FILTER_FIELDS}
        older = None
        if len(found) == PAGE_SIZE:
            older = urlencode({**{k: v for k, v in args.items() if v}, "before": found[-1]["seq"]})
        self.render_page(
            "console.html",
            rows=grouped(found),
            page_size=PAGE_SIZE,
            paged=bool(before),
            older=older,
            args=args,
            datasets=self.datasets_named(),
            verdict=verdict,
            checked=checked,
        )


class SessionPage(ConsoleHandler):
    @web.authenticated
    async def get(self, session: str) -> None:
        events = list(reversed(await self.records(Filters(), session)))
        if not events:
            raise web.HTTPError(404, f"there is no session '{session}' in the log")
        user, started = events[0].get("actor"), events[0].get("time")
        logins = await self.records(Filters(user=user, type="login", until=started))
        await self.note_reading()
        self.render_page(
            "session.html",
            session=session,
            login=grouped(logins[:1]),
            events=grouped(events),
            user_of=user,
        )


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
        self.render_page(
            "datasets.html",
            rows=grouped(mounts),
            datasets=self.datasets_named(),
            args={n: self.get_argument(n, "") for n in ("dataset", "since", "until")},
        )


class IntegrityPage(ConsoleHandler):
    @web.authenticated
    async def get(self) -> None:
        verdict, checked = await self.settings["integrity"].verdict()
        await self.note_reading()
        self.render_page("integrity.html", verdict=verdict, checked=checked)


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
