"""Loaded into each session's Jupyter server: the airlock is the only way out.

- The server's download routes answer 403: `/files/` (JupyterLab's Download command and
  direct links), `/view/` and `/nbconvert/` (Export Notebook As). JupyterLab's download and
  export commands are switched off as well (`session_jupyter_config/labconfig`).
- `<server>/enclave/airlock/` is the session's export page: pick files of the home or project
  folder, say why, and send them to the airlock as `enclave.request_export` does. JupyterLab's
  File menu opens it ("Request an export"): the spawner writes `lab_setting_overrides` for the
  session's own address into its Jupyter configuration.
"""

from __future__ import annotations

import asyncio
import html
import os
from pathlib import Path

from jupyter_server.base.handlers import JupyterHandler
from jupyter_server.utils import url_path_join
from tornado import web

from enclave.airlock import (
    ExportError,
    export_folders,
    export_requests,
    pages_url,
    request_export,
)

PAGE = "enclave/airlock/"
BLOCKED_ROUTES = ("files", "view", "nbconvert")
LISTED_FILES = 2000  # at most, per folder, on the export page
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


def lab_setting_overrides(server_url: str) -> dict:
    """JupyterLab setting defaults (`labconfig/default_setting_overrides.json`) that put
    "Request an export" in the File menu of the session served at `server_url`."""
    entry = {
        "command": "help:open",
        "rank": 98,
        "args": {
            "url": url_path_join(server_url, PAGE),
            "text": "Request an export…",
            "newBrowserTab": True,
        },
    }
    menu = {"id": "jp-mainmenu-file", "items": [{"type": "separator", "rank": 98}, entry]}
    return {"@jupyterlab/mainmenu-extension:plugin": {"menus": [menu]}}


def _files(folder: Path, prefix: str) -> list[str]:
    """Names of the files under `folder` (hidden ones left out), as the airlock names them."""
    found = []
    for root, folders, names in os.walk(folder):
        folders[:] = sorted(f for f in folders if not f.startswith("."))
        for name in sorted(names):
            if not name.startswith("."):
                path = Path(root, name)
                found.append(prefix + path.relative_to(folder).as_posix())
                if len(found) >= LISTED_FILES:
                    return found
    return found


def _checkboxes(names: list[str], field: str) -> str:
    if not names:
        return "<p>none</p>"
    return "".join(
        f'<label><input type="checkbox" name="{field}" value="{html.escape(n)}"> '
        f"{html.escape(n)}</label><br>"
        for n in names
    )


class ExportPage(JupyterHandler):
    """The session's export page."""

    def _page(self, xsrf_form: str, message: str = "") -> str:
        """The page, with what the airlock says of this session's requests (blocking)."""
        names = [n for prefix, folder in export_folders().items() for n in _files(folder, prefix)]
        try:
            requests = export_requests()
        except ExportError as error:
            requests, message = [], message or str(error)
        pages = pages_url()
        rows = "".join(
            f'<tr><td><a href="{pages}requests/{r["id"]}" target="_blank">#{r["id"]}</a></td>'
            f"<td>{html.escape(', '.join(r['files']))}</td><td>{html.escape(r['checks'])}</td>"
            f"<td>{html.escape(r['status'])}</td></tr>"
            for r in requests
        )
        return (
            "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
            "<title>Request an export · Enclave</title></head>"
            "<body style='font-family: system-ui, sans-serif; margin: 1.5rem; max-width: 60rem'>"
            "<h1>Request an export</h1>"
            f"<p id='message'>{html.escape(message)}</p>"
            "<p>The files are copied to the airlock as they are now, checked for disclosure, "
            "and reviewed by this project's output checkers, never by you. Once approved you "
            f"download them from <a href='{pages}' target='_blank'>the airlock</a>.</p>"
            f"<form method='post' id='export'>{xsrf_form}"
            "<fieldset><legend>Files to release</legend>"
            f"{_checkboxes(names, 'output')}</fieldset>"
            "<fieldset><legend>Supporting files, for the checkers only (a table's "
            "&lt;name&gt;.contributors.csv)</legend>"
            f"{_checkboxes(names, 'supporting')}</fieldset>"
            "<label>Justification: what the files are and why they must leave<br>"
            "<textarea name='justification' rows='4' cols='80' required></textarea></label><br>"
            "<button type='submit'>Request the export</button></form>"
            "<h2>This session's requests</h2><table id='requests'>"
            "<tr><th>request</th><th>files</th><th>checks</th><th>status</th></tr>"
            f"{rows}</table></body></html>"
        )

    async def _render(self, message: str = "", status: int = 200) -> None:
        page = await asyncio.to_thread(self._page, self.xsrf_form_html(), message)
        self.set_status(status)
        self.finish(page)

    @web.authenticated
    async def get(self) -> None:
        await self._render()

    @web.authenticated
    async def post(self) -> None:
        folders = export_folders()

        def path_of(name: str) -> Path:
            prefix = "project/" if name.startswith("project/") else ""
            return folders[prefix] / name.removeprefix(prefix)

        try:
            request = await asyncio.to_thread(
                request_export,
                [path_of(n) for n in self.get_body_arguments("output")],
                self.get_body_argument("justification", ""),
                [path_of(n) for n in self.get_body_arguments("supporting")],
            )
        except ExportError as error:
            await self._render(str(error), 400)
            return
        await self._render(str(request).splitlines()[0])


def _load_jupyter_server_extension(serverapp) -> None:
    base = serverapp.web_app.settings["base_url"]
    serverapp.web_app.add_handlers(
        ".*$",
        [
            *((url_path_join(base, route, "(.*)"), DownloadRefused) for route in BLOCKED_ROUTES),
            (url_path_join(base, PAGE), ExportPage),
        ],
    )


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": __name__}]
