"""The simple repository API (PEP 503 HTML, PEP 691 JSON) as a session's pip reads it.

- `simple/`: the names the session's project may install.
- `simple/<name>/`: that package's files, linked with their SHA-256, for an allowed name; the
  list comes from upstream. A name not allowed is answered here and never asked upstream.
  pip shows nothing of a 404's body, but shows a page's Content-Type when it cannot read it:
  the refusal is answered as a `text/x-enclave-refusal` page whose type names the package and
  how to ask for it, so that the researcher reads it in pip's output.
- `files/<name>/<file>`: the file, from the cache or fetched and checked against its hash;
  each one served is recorded in the audit log (user, project, session run, package,
  version, file and SHA-256).
"""

from __future__ import annotations

import asyncio
import html
import json

from tornado import web

from ..core.package_allowances import normalized_name
from .access import SessionHandler
from .upstream import JSON_TYPE, IndexFile, UpstreamError

HTML_TYPE = "application/vnd.pypi.simple.v1+html"
REFUSAL_TYPE = "text/x-enclave-refusal"
CHUNK = 1024 * 1024


def refusal(name: str, project: str) -> str:
    """How a researcher asks for a name their project may not install."""
    return (
        f"package '{name}' is not allowed in project '{project}': ask for it with "
        f"enclave.request_package('{name}', 'why you need it'), or Help > Request a package "
        "in JupyterLab"
    )


class IndexHandler(SessionHandler):
    def wants_json(self) -> bool:
        return JSON_TYPE in self.request.headers.get("Accept", "")

    def answer(self, document: dict, links: list[tuple[str, str, dict]], title: str) -> None:
        """A page in the form the client asked for: `document` as PEP 691 JSON, or the
        `links` (text, href, data attributes) as PEP 503 HTML."""
        if self.wants_json():
            self.set_header("Content-Type", JSON_TYPE)
            self.finish(json.dumps({"meta": {"api-version": "1.0"}, **document}))
            return
        anchors = []
        for text, href, data in links:
            attributes = "".join(
                f' data-{key}="{html.escape(str(value))}"' for key, value in data.items()
            )
            anchors.append(f'<a href="{html.escape(href)}"{attributes}>{html.escape(text)}</a>')
        self.set_header("Content-Type", f"{HTML_TYPE}; charset=utf-8")
        self.finish(
            "<!DOCTYPE html>\n<html><head>"
            '<meta name="pypi:repository-version" content="1.0">'
            f"<title>{html.escape(title)}</title></head><body>\n"
            + "<br>\n".join(anchors)
            + "\n</body></html>\n"
        )

    async def allowed(self, name: str) -> str:
        """`name` normalized, if the session's project may install it; else the refusal."""
        try:
            normalized = normalized_name(name)
        except ValueError:
            raise web.HTTPError(404, f"{name!r} is not a package name") from None
        names = await self.act(self.allowances.allowed, self.project)
        if normalized not in names:
            message = refusal(normalized, self.project)
            self.set_header("Content-Type", f'{REFUSAL_TYPE}; reason="{message}"')
            self.finish(message + "\n")
            raise web.Finish()
        return normalized

    async def listed(self, name: str) -> list[IndexFile]:
        try:
            return await self.settings["upstream"].files(name)
        except UpstreamError as error:
            raise web.HTTPError(502, str(error)) from None


class RootPage(IndexHandler):
    async def get(self) -> None:
        names = sorted(await self.act(self.allowances.allowed, self.project))
        self.answer(
            {"projects": [{"name": n} for n in names]},
            [(n, f"{n}/", {}) for n in names],
            "Packages this project may install",
        )


class ProjectPage(IndexHandler):
    async def get(self, name: str) -> None:
        normalized = await self.allowed(name)
        if normalized != name:
            self.redirect(f"{self.settings['prefix']}simple/{normalized}/", permanent=True)
            return
        files = await self.listed(normalized)
        base = f"{self.settings['prefix']}files/{normalized}/"
        self.answer(
            {
                "name": normalized,
                "files": [
                    {
                        "filename": f.filename,
                        "url": base + f.filename,
                        "hashes": {"sha256": f.sha256},
                        "requires-python": f.requires_python,
                        "yanked": f.yanked,
                    }
                    for f in files
                ],
            },
            [(f.filename, f"{base}{f.filename}#sha256={f.sha256}", _html_data(f)) for f in files],
            f"Links for {normalized}",
        )


def _html_data(file: IndexFile) -> dict:
    data: dict = {}
    if file.requires_python:
        data["requires-python"] = file.requires_python
    if file.yanked:
        data["yanked"] = file.yanked if isinstance(file.yanked, str) else ""
    return data


class FileDownload(IndexHandler):
    async def get(self, name: str, filename: str) -> None:
        normalized = await self.allowed(name)
        file = next((f for f in await self.listed(normalized) if f.filename == filename), None)
        if file is None:
            raise web.HTTPError(404, f"{normalized} has no file {filename}")
        try:
            path = await self.settings["upstream"].fetch(file)
        except UpstreamError as error:
            raise web.HTTPError(502, str(error)) from None
        run = await asyncio.to_thread(self.settings["hub_sessions"].run_of, self.user, self.project)
        # Recorded before a byte is sent: a download the log cannot hold is not made.
        await asyncio.to_thread(
            self.settings["record"],
            {
                "actor": self.user,
                "action": "package.download",
                "target": f"{normalized}=={file.version}",
                "project": self.project,
                "session": run,
                "outcome": "ok",
                "detail": {
                    "package": normalized,
                    "version": file.version,
                    "file": file.filename,
                    "sha256": file.sha256,
                },
            },
        )
        self.set_header("Content-Type", "application/octet-stream")
        self.set_header("Content-Length", str(path.stat().st_size))
        with open(path, "rb") as source:
            while chunk := source.read(CHUNK):
                self.write(chunk)
                await self.flush()
        self.finish()


def index_handlers(prefix: str) -> list[tuple]:
    name = r"([A-Za-z0-9._-]{1,100})"
    return [
        (prefix + "simple/", RootPage),
        (prefix + f"simple/{name}/?", ProjectPage),
        (prefix + rf"files/{name}/([A-Za-z0-9._+!-]{{1,250}})", FileDownload),
    ]
