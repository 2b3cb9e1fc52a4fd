"""The session's Contents API, which gives file contents to the browser only to show them.

JupyterLab reads a file through `GET api/contents/<path>` to open it. That route would also
hand any file whole to a script in the browser, so the server's contents manager answers a
content read only for what a person reads on screen: notebooks and text files, and images, up
to `view_max_bytes`. Anything else is refused with 403 naming the airlock, the one way files
leave. Each content read is recorded (`file.read`, with its size and SHA-256) before it is
answered; listings and metadata lookups (no `content`) are not reads of a file's content.

Saves of code files (`.py`, `.R`, `.sh`, `.ipynb`, `.sql`...) are recorded with what is saved
before it is written (up to `CODE_LIMIT` characters, its hash beyond), so that an auditor can
read in full the file a recorded cell such as `%run analysis.py` ran.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import mimetypes
from contextvars import ContextVar
from pathlib import PurePosixPath

from jupyter_server.services.contents.largefilemanager import AsyncLargeFileManager
from tornado import web
from traitlets import Any, Integer

CODE_SUFFIXES = frozenset(
    {".py", ".ipynb", ".r", ".rmd", ".qmd", ".sh", ".bash", ".sql", ".jl", ".pl", ".rb", ".js"}
)
CODE_LIMIT = 256 * 1024  # characters of a saved code file kept in its record
AIRLOCK = "files leave a session only through the airlock (File > Request an export)"
_COPYING = ContextVar("copying", default=False)  # inside `copy`, which reads on the server


def is_code(path: str) -> bool:
    return PurePosixPath(path).suffix.lower() in CODE_SUFFIXES


def _shown_on_screen(model: dict) -> bool:
    """Whether a model read with its content is something a person reads on screen."""
    if model["type"] in ("notebook", "directory"):
        return True
    mimetype = model.get("mimetype") or mimetypes.guess_type(model["path"])[0] or ""
    return model.get("format") == "text" or mimetype.startswith("image/")


def _saved_bytes(model: dict) -> bytes:
    """What a save writes, as bytes (a notebook as its JSON)."""
    content = model["content"]
    if model["type"] == "notebook":
        return json.dumps(content, indent=1, sort_keys=True, ensure_ascii=False).encode()
    if model.get("format") == "base64":
        return base64.b64decode(content)
    return str(content).encode()


class ShowingContents(AsyncLargeFileManager):
    """The files of a session, read only to be shown and recorded as they are read and saved."""

    view_max_bytes = Integer(
        5 * 1024 * 1024, help="the most bytes of one file the browser is given to show it"
    ).tag(config=True)
    recorder = Any(help="the session's SessionRecorder (set by the recording extension)")

    async def get(self, path, content=True, type=None, format=None, **kwargs):
        if not content or _COPYING.get():
            return await super().get(path, content=content, type=type, format=format, **kwargs)
        about = await super().get(path, content=False, type=type, format=format)
        if about["type"] != "directory" and (about.get("size") or 0) > self.view_max_bytes:
            raise web.HTTPError(
                403,
                f"{path} is {about['size']} bytes, more than the {self.view_max_bytes} a session "
                f"shows; {AIRLOCK}",
            )
        model = await super().get(path, content=True, type=type, format=format, **kwargs)
        if not _shown_on_screen(model):
            raise web.HTTPError(403, f"{path} is not text, a notebook or an image; {AIRLOCK}")
        if model["type"] != "directory":
            await self._record_read(path)
        return model

    async def _record_read(self, path: str) -> None:
        path = path.strip("/")
        data = await asyncio.to_thread(self._read_bytes, path)
        if len(data) > self.view_max_bytes:
            raise web.HTTPError(403, f"{path} grew past what a session shows; {AIRLOCK}")
        reason = await self.recorder.record(
            action="file.read",
            target=path,
            outcome="ok",
            detail={"size": len(data), "sha256": hashlib.sha256(data).hexdigest()},
        )
        if reason is not None:
            raise web.HTTPError(503, f"{path} is not shown: it could not be recorded ({reason})")

    def _read_bytes(self, path: str) -> bytes:
        with open(self._get_os_path(path), "rb") as file:
            return file.read(self.view_max_bytes + 1)

    async def copy(self, from_path, to_path=None):
        """A copy within the session reads the file on the server, not for a browser: it is
        neither refused for its size nor recorded as a read (it is recorded as `file.copy`)."""
        copying = _COPYING.set(True)
        try:
            return await super().copy(from_path, to_path)
        finally:
            _COPYING.reset(copying)

    async def save(self, model, path=""):
        if is_code(path) and model.get("content") is not None:
            await self._record_code(model, path)
        return await super().save(model, path)

    async def _record_code(self, model: dict, path: str) -> None:
        path = path.strip("/")
        data = _saved_bytes(model)
        try:
            text = data.decode()
        except UnicodeDecodeError:
            text = None
        detail = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        if model.get("chunk") is not None:
            detail["chunk"] = model["chunk"]
        reason = await self.recorder.record(
            action="file.save",
            target=path,
            outcome="ok",
            code=text if text is not None and len(text) <= CODE_LIMIT else None,
            detail=detail,
        )
        if reason is not None:
            raise web.HTTPError(503, f"{path} was not saved: it could not be recorded ({reason})")
