"""Asking for files to leave the enclave, from a notebook session.

    request = enclave.request_export(["results/table1.csv"], justification="Table 1 of the paper")
    request.status        # 'in-review', or 'checks-failed' with request.problems() saying why
    enclave.export_requests()

The airlock service snapshots the files as they are now (later edits change nothing), checks
them for disclosure, and queues them for the project's output checkers (as many approvals as
the site's `airlock.reviews_required` asks, never the requester's own). Approved files
are downloaded outside the session, from the airlock's pages. Files are named by their path in
the home folder, or `project/...` in the project's shared folder.
"""

from __future__ import annotations

import html
import json
import os
import platform
import sys
from contextlib import ExitStack
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from urllib.parse import urlsplit

from .session_services import call

URL_VARIABLE = "ENCLAVE_AIRLOCK_URL"


class ExportError(RuntimeError):
    """The request was not made; the message says why."""


@dataclass(frozen=True)
class ExportRequest:
    """A request as the airlock holds it."""

    id: int
    status: str
    checks: str
    files: list[dict]

    @classmethod
    def from_reply(cls, reply: dict) -> ExportRequest:
        current = reply["revisions"][-1]
        return cls(reply["id"], reply["status"], current["checks"], current["files"])

    @property
    def url(self) -> str:
        """The request's page in the airlock, for the browser."""
        return f"{pages_url()}requests/{self.id}"

    def problems(self) -> list[str]:
        """What the checks failed or flagged, one line each."""
        return [
            f"{f['name']}: {finding['outcome']}: {finding['message']}"
            for f in self.files
            for finding in f["findings"]
            if finding["outcome"] != "pass"
        ]

    def __str__(self) -> str:
        lines = [f"Export request {self.id}: {self.status} (checks: {self.checks}), {self.url}"]
        return "\n".join([*lines, *(f"  {p}" for p in self.problems())])

    def _repr_html_(self) -> str:
        items = "".join(f"<li>{html.escape(p)}</li>" for p in self.problems())
        return (
            f'<p>Export request <a href="{html.escape(self.url)}" target="_blank">'
            f"{self.id}</a>: <strong>{html.escape(self.status)}</strong> "
            f"(checks: {html.escape(self.checks)})</p>" + (f"<ul>{items}</ul>" if items else "")
        )


def pages_url() -> str:
    """The airlock's pages as the browser reaches them: on the hub's origin (named in
    JUPYTERHUB_HOST when sessions have origins of their own), under the hub's base URL, at the
    path of the session's airlock address (the proxy routes that path to the airlock)."""
    path = urlsplit(os.environ.get(URL_VARIABLE, "")).path.lstrip("/")
    hub = os.environ.get("JUPYTERHUB_HOST", "")
    return f"{hub}{os.environ.get('JUPYTERHUB_BASE_URL', '/')}{path}"


def export_folders() -> dict[str, Path]:
    """Where exported files may come from, by the prefix of their names."""
    return {
        "": Path(os.environ.get("HOME", "~")).expanduser().resolve(),
        "project/": Path(os.environ.get("ENCLAVE_PROJECT_FOLDER", "/project")).resolve(),
    }


def export_name(path: str | os.PathLike) -> tuple[str, Path]:
    """(the name the airlock gives a file, its resolved path); ExportError if it cannot go."""
    resolved = Path(path).expanduser().absolute().resolve()
    folders = export_folders()
    for prefix, folder in sorted(folders.items(), key=lambda item: -len(str(item[1]))):
        if resolved.is_relative_to(folder) and resolved != folder:
            name = prefix + resolved.relative_to(folder).as_posix()
            break
    else:
        raise ExportError(
            f"{path}: only files in your home folder ({folders['']}) or the project folder "
            f"({folders['project/']}) can be exported"
        )
    if resolved.is_dir():
        raise ExportError(f"{path} is a folder: name its files, or put them in a zip")
    if not resolved.is_file():
        raise ExportError(f"{path}: no such file")
    return name, resolved


def environment() -> dict:
    """What this session runs: Python, the platform and every installed package's version."""
    packages = {}
    for distribution in metadata.distributions():
        name = distribution.metadata.get("Name")
        if name:
            packages[name] = distribution.version
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "executable": sys.executable,
        "project": os.environ.get("ENCLAVE_PROJECT"),
        "packages": dict(sorted(packages.items(), key=lambda item: item[0].lower())),
    }


def _airlock(path: str, **request) -> dict:
    return call(URL_VARIABLE, "airlock", ExportError, path, **request)


def request_export(
    paths: list[str | os.PathLike],
    justification: str,
    supporting: list[str | os.PathLike] = (),
    revises: int | None = None,
    job: int | None = None,
) -> ExportRequest:
    """Ask for `paths` to be released. `supporting` files go to the checkers only (a table's
    `<name>.contributors.csv`, say); `revises` is the request a new revision replaces; `job`
    the job whose outputs `paths` are (each must be a file it left, unchanged), whose code's
    hash the release record then carries."""
    if isinstance(paths, str | os.PathLike):
        paths = [paths]
    if isinstance(supporting, str | os.PathLike):
        supporting = [supporting]
    if not paths:
        raise ExportError("name at least one file to export")
    with ExitStack() as stack:
        files = []
        for role, group in (("output", paths), ("supporting", supporting)):
            for path in group:
                name, resolved = export_name(path)
                handle = stack.enter_context(resolved.open("rb"))
                files.append((role, (name, handle, "application/octet-stream")))
        data = {"justification": justification, "environment": json.dumps(environment())}
        if revises is not None:
            data["revises"] = str(revises)
        if job is not None:
            data["job"] = str(int(job))
        reply = _airlock("api/requests", method="POST", files=files, data=data)
    return ExportRequest.from_reply(reply)


def export_requests() -> list[dict]:
    """This session's export requests (its user's, in its project), newest first."""
    return _airlock("api/requests")["requests"]


def export_request(request_id: int) -> dict:
    """One of this session's export requests, with every revision, its files and findings."""
    return _airlock(f"api/requests/{int(request_id)}")
