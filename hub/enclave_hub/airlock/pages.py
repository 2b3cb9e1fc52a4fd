"""The airlock's web pages: the requests a person may see, one request with its files, checks
and reviews, the checkers' decision form, and the requester's downloads of a release."""

from __future__ import annotations

import asyncio
import csv
import itertools
from pathlib import Path, PurePosixPath

from tornado import web

from ..core.pages import FramedPages, page_templates
from .access import AirlockHandler

PAGES = page_templates(Path(__file__).with_name("templates"))
CHUNK = 1024 * 1024
# Tables a checker reads as tables, by suffix: their delimiter; and how many rows are shown.
TABLE_DELIMITERS = {".csv": ",", ".tsv": "\t"}
SHOWN_ROWS = 500
# Shown in the checker's browser as they are; anything else as text when it is UTF-8.
INLINE_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
}


class PageHandler(FramedPages, AirlockHandler):
    pages = PAGES
    section = "Airlock"

    def render_page(self, template: str, status: int = 200, **values) -> None:
        super().render_page(
            template,
            status,
            reviews_required=self.settings["site"].airlock.reviews_required,
            **values,
        )


class RequestsPage(PageHandler):
    @web.authenticated
    async def get(self) -> None:
        caller = self.person()
        found = await self.act(self.airlock.visible_to, caller.name, caller.platform_reader)
        self.render_page(
            "requests.html",
            awaiting=[r for r in found if r["awaits_you"]],
            mine=[r for r in found if r["requester"] == caller.name],
            others=[r for r in found if r["requester"] != caller.name and not r["awaits_you"]],
        )


class RequestPage(PageHandler):
    @web.authenticated
    async def get(self, request_id: str) -> None:
        caller = self.person()
        request = await self.act(
            self.airlock.show, caller.name, int(request_id), caller.platform_reader
        )
        self.render_page("request.html", request=request, current=request["revisions"][-1])

    @web.authenticated
    async def post(self, request_id: str) -> None:
        """A checker's decision."""
        caller = self.person()
        decision = self.get_body_argument("decision", "")
        await self.act(
            self.airlock.review,
            caller.name,
            int(request_id),
            decision,
            self.get_body_argument("comment", ""),
        )
        self.notify(f"Your decision on request #{request_id} is recorded: {decision}.")
        self.redirect(f"{self.hub_auth.base_url}requests/{request_id}")


class FileSender(PageHandler):
    async def send(self, path: Path, name: str, inline: bool) -> None:
        """A file as an attachment, or shown in the browser as text or a picture; never as a
        page that could run scripts."""
        content_type = "application/octet-stream"
        if inline:
            content_type = INLINE_TYPES.get(PurePosixPath(name).suffix.lower(), content_type)
            if content_type == "application/octet-stream" and await asyncio.to_thread(
                _is_text, path
            ):
                content_type = "text/plain; charset=utf-8"
        disposition = "inline" if content_type != "application/octet-stream" else "attachment"
        self.set_header("Content-Type", content_type)
        self.set_header(
            "Content-Disposition", f'{disposition}; filename="{PurePosixPath(name).name}"'
        )
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Content-Security-Policy", "sandbox; default-src 'none'; img-src 'self'")
        with path.open("rb") as source:
            while chunk := await asyncio.to_thread(source.read, CHUNK):
                self.write(chunk)
                await self.flush()
        self.finish()


class DownloadPage(FileSender):
    """A released file, or the release record, for the requester (outside the session)."""

    @web.authenticated
    async def get(self, request_id: str, name: str) -> None:
        caller = self.person()
        path = await self.act(self.airlock.released_file, caller.name, int(request_id), name)
        await self.send(path, name, inline=False)


class SnapshotPage(FileSender):
    """A file as snapshotted, for the project's output checkers to read: a CSV or TSV table
    as a table in the frame (`?raw=1` for the text), anything else as `send` shows it."""

    @web.authenticated
    async def get(self, request_id: str, name: str) -> None:
        caller = self.person()
        path = await self.act(self.airlock.snapshot, caller.name, int(request_id), name)
        delimiter = TABLE_DELIMITERS.get(PurePosixPath(name).suffix.lower())
        if delimiter is None or self.get_argument("raw", ""):
            await self.send(path, name, inline=True)
            return
        rows, more = await asyncio.to_thread(_table_rows, path, delimiter)
        self.render_page("snapshot.html", request_id=request_id, name=name, rows=rows, more=more)


def _table_rows(path: Path, delimiter: str) -> tuple[list[list[str]], bool]:
    """The first SHOWN_ROWS rows of a delimited text file, and whether there are more."""
    with path.open(newline="", encoding="utf-8", errors="replace") as source:
        reader = csv.reader(source, delimiter=delimiter)
        rows = list(itertools.islice(reader, SHOWN_ROWS + 1))
    return rows[:SHOWN_ROWS], len(rows) > SHOWN_ROWS


def _is_text(path: Path) -> bool:
    with path.open("rb") as source:
        sample = source.read(65536)
    try:
        sample.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def page_handlers(prefix: str) -> list[tuple]:
    number = r"([0-9]{1,12})"
    return [
        (prefix, RequestsPage),
        (prefix + f"requests/{number}", RequestPage),
        (prefix + f"requests/{number}/files/(.+)", DownloadPage),
        (prefix + f"requests/{number}/snapshots/(.+)", SnapshotPage),
    ]
