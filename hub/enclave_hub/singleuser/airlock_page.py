"""Loaded into each session's Jupyter server: the airlock is the only way out.

- The server's download routes answer 403: `/files/` (JupyterLab's Download command and
  direct links), `/view/` and `/nbconvert/` (Export Notebook As). JupyterLab's download and
  export commands are switched off as well (`session_jupyter_config/labconfig`).
- `<server>/enclave/airlock/` is the session's export page: pick files of the home or project
  folder, say why, and send them to the airlock as `enclave.request_export` does. JupyterLab's
  File menu opens it ("Request an export"): the spawner writes `lab_menu` for the session's
  own address into its Jupyter configuration.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from pathlib import Path

from jupyter_server.base.handlers import JupyterHandler
from jupyter_server.utils import url_path_join
from jupyterhub._data import DATA_FILES_PATH
from tornado import web

from enclave.airlock import (
    ExportError,
    export_folders,
    export_request,
    export_requests,
    pages_url,
    request_export,
)

from ..core.pages import frame_for, page_templates
from .lab_look import page_menu

PAGE = "enclave/airlock/"
STYLESHEET = PAGE + "style.css"
HUB_STYLESHEET = Path(DATA_FILES_PATH, "static", "css", "style.min.css")
PAGES = page_templates(Path(__file__).with_name("templates"))
BLOCKED_ROUTES = ("files", "view", "nbconvert")
LISTED_FILES = 2000  # at most, per folder, on the export page
FOLDER_LABELS = {"": "Your home folder", "project/": "The project folder (project/)"}
# In the name of a table's contributor counts for the checkers: `<table>.contributors.csv`.
CONTRIBUTORS_MARK = ".contributors."
EMPTY_FORM = {"output": [], "supporting": [], "justification": "", "revises": None, "job": None}
REFUSAL = (
    "Downloads are disabled in Enclave sessions: files leave only through the airlock "
    "(File > Request an export, or enclave.request_export)."
)


class DownloadRefused(JupyterHandler):
    """Every method of a download route: 403, whoever asks."""

    def prepare(self) -> None:
        raise web.HTTPError(403, REFUSAL)

    def write_error(self, status_code: int, **kwargs) -> None:
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.finish(f"{status_code}: {REFUSAL}\n")


def lab_menu(server_url: str) -> dict:
    """JupyterLab's File menu with "Request an export" for the session at `server_url`."""
    return page_menu("jp-mainmenu-file", 98, server_url, PAGE, "Request an export…")


def session_frame(handler: JupyterHandler, title: str) -> dict:
    """The frame of a session's own page, in the hub's look (its stylesheet from the
    session's origin: `HubStylesheet`)."""
    return frame_for(
        title,
        os.environ.get("JUPYTERHUB_USER"),
        None,
        origin=os.environ.get("JUPYTERHUB_HOST", ""),
        stylesheet=url_path_join(handler.base_url, STYLESHEET),
    )


@dataclass(frozen=True)
class Entry:
    """A row of the export page's file tree: a folder, or a file with its size."""

    name: str  # as the airlock names it: 'results/table.csv', 'project/shared.csv'
    depth: int
    folder: bool
    size: int = 0
    supports: str = ""  # for a table's contributors file: the table's name


def file_tree(folder: Path, prefix: str, label: str) -> list[Entry]:
    """The files under `folder` (hidden ones left out) as a tree, folders first; at most
    LISTED_FILES files, and a last row saying how many more there are."""
    rows = [Entry(label, 0, True)]
    listed = 0
    for root, folders, names in os.walk(folder):
        folders[:] = sorted(f for f in folders if not f.startswith("."))
        here = Path(root).relative_to(folder)
        depth = len(here.parts) + 1
        if here.parts:
            rows.append(Entry(prefix + here.as_posix(), depth - 1, True))
        for name in sorted(n for n in names if not n.startswith(".")):
            path = Path(root, name)
            if listed >= LISTED_FILES:
                rows.append(Entry(f"… more files than the {LISTED_FILES} listed", depth, True))
                return rows
            listed += 1
            supports = ""
            if CONTRIBUTORS_MARK in name:
                supports = name.split(CONTRIBUTORS_MARK)[0]
            try:
                size = path.stat().st_size
            except OSError:
                size = 0
            rows.append(Entry(prefix + (here / name).as_posix(), depth, False, size, supports))
    return rows


class ExportPage(JupyterHandler):
    """The session's export page: the file tree, the form, and this session's requests."""

    def _page(self, form: dict, message: str = "", outcome: dict | None = None) -> str:
        """The page (blocking: it reads the folders and asks the airlock)."""
        tree = [
            row
            for prefix, folder in export_folders().items()
            for row in file_tree(folder, prefix, FOLDER_LABELS[prefix])
        ]
        try:
            requests = export_requests()
        except ExportError as error:
            requests, message = [], message or str(error)
        return PAGES.get_template("export.html").render(
            frame=session_frame(self, "Airlock"),
            prefix=pages_url(),
            tree=tree,
            form=form,
            message=message,
            outcome=outcome,
            requests=requests,
            xsrf=self.xsrf_form_html(),
        )

    async def _render(self, form: dict, message: str = "", outcome=None, status=200) -> None:
        page = await asyncio.to_thread(self._page, form, message, outcome)
        self.set_status(status)
        self.finish(page)

    @web.authenticated
    async def get(self) -> None:
        """The empty form, or with `revise=<id>` that request's files, justification and
        findings, to be sent again as its next revision."""
        revise = self.get_argument("revise", "")
        if not revise:
            await self._render(EMPTY_FORM)
            return
        try:
            found = await asyncio.to_thread(export_request, int(revise))
        except (ExportError, ValueError) as error:
            await self._render(
                EMPTY_FORM, f"Request {revise} cannot be revised: {error}", None, 400
            )
            return
        current = found["revisions"][-1]
        form = {
            "output": [f["name"] for f in current["files"] if f["role"] == "output"],
            "supporting": [f["name"] for f in current["files"] if f["role"] == "supporting"],
            "justification": current["justification"],
            "revises": found["id"],
            "job": (current.get("job") or {}).get("id"),
        }
        await self._render(form, "", found)

    @web.authenticated
    async def post(self) -> None:
        folders = export_folders()

        def path_of(name: str) -> Path:
            prefix = "project/" if name.startswith("project/") else ""
            return folders[prefix] / name.removeprefix(prefix)

        revises = self.get_body_argument("revises", "")
        job = self.get_body_argument("job", "").strip()
        form = {
            "output": self.get_body_arguments("output"),
            "supporting": self.get_body_arguments("supporting"),
            "justification": self.get_body_argument("justification", ""),
            "revises": int(revises) if revises.isdigit() else None,
            "job": int(job) if job.isdigit() else None,
        }
        if job and form["job"] is None:
            await self._render(form, f"From job: {job!r} is not a job number", None, 400)
            return
        try:
            made = await asyncio.to_thread(
                request_export,
                [path_of(n) for n in form["output"]],
                form["justification"],
                [path_of(n) for n in form["supporting"]],
                form["revises"],
                form["job"],
            )
            found = await asyncio.to_thread(export_request, made.id)
        except ExportError as error:
            await self._render(form, str(error), None, 400)
            return
        await self._render(EMPTY_FORM, "", found)


class HubStylesheet(JupyterHandler):
    """The hub's stylesheet, served from the session's own origin (whose pages may load
    styles from nowhere else), so that the export page has the frame's look."""

    @web.authenticated
    async def get(self) -> None:
        self.set_header("Content-Type", "text/css; charset=utf-8")
        self.set_header("Cache-Control", "max-age=3600")
        self.finish(await asyncio.to_thread(HUB_STYLESHEET.read_bytes))


def _load_jupyter_server_extension(serverapp) -> None:
    base = serverapp.web_app.settings["base_url"]
    serverapp.web_app.add_handlers(
        ".*$",
        [
            *((url_path_join(base, route, "(.*)"), DownloadRefused) for route in BLOCKED_ROUTES),
            (url_path_join(base, PAGE), ExportPage),
            (url_path_join(base, STYLESHEET), HubStylesheet),
        ],
    )


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": __name__}]
