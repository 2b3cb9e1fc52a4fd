"""The upstream index the package index takes files from: file lists (PEP 503 HTML or PEP 691
JSON) kept for a while, and files kept by their SHA-256, each checked against the hash its
list gave before it is kept or served.

Only files whose list gives a SHA-256 are offered: a file whose hash cannot be checked is never
served. How many were left out, and why, is logged.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urldefrag, urljoin

import httpx
from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    parse_sdist_filename,
    parse_wheel_filename,
)

log = logging.getLogger(__name__)
JSON_TYPE = "application/vnd.pypi.simple.v1+json"
ACCEPT = f"{JSON_TYPE}, application/vnd.pypi.simple.v1+html;q=0.2, text/html;q=0.1"
TIMEOUT = httpx.Timeout(30.0, read=120.0)


class UpstreamError(Exception):
    """Upstream could not give what was asked; the message says what and why."""


@dataclass(frozen=True)
class IndexFile:
    """One file of a package as upstream lists it."""

    filename: str
    url: str
    sha256: str
    requires_python: str | None = None
    yanked: str | bool = False

    @property
    def version(self) -> str:
        """The version its name carries ('' where the name is not a wheel's or sdist's)."""
        try:
            if self.filename.endswith(".whl"):
                return str(parse_wheel_filename(self.filename)[1])
            return str(parse_sdist_filename(self.filename)[1])
        except (InvalidWheelFilename, InvalidSdistFilename):
            return ""


def host_index_url(python: str = sys.executable) -> str:
    """The index this host's pip installs from: its configured index-url, else pip's own."""
    configured = subprocess.run(
        [python, "-m", "pip", "config", "list"], capture_output=True, text=True, check=False
    ).stdout
    for line in configured.splitlines():
        key, _, value = line.partition("=")
        if key.rpartition(".")[2] == "index-url":
            return value.strip().strip("'\"")
    from pip._internal.models.index import PyPI  # pip's default, named by pip itself

    return PyPI.simple_url


class _Links(HTMLParser):
    """The anchors of a PEP 503 page: href and the data-* attributes."""

    def __init__(self):
        super().__init__()
        self.anchors: list[tuple[dict, str]] = []
        self._open: dict | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "a":
            self._open = dict(attrs)
            self._open.setdefault("_text", "")

    def handle_data(self, data):
        if self._open is not None:
            self._open["_text"] += data

    def handle_endtag(self, tag):
        if tag == "a" and self._open is not None:
            self.anchors.append((self._open, self._open.pop("_text").strip()))
            self._open = None


def _from_html(page_url: str, text: str) -> list[tuple[str, str, dict, str | None, object]]:
    parser = _Links()
    parser.feed(text)
    found = []
    for attributes, shown in parser.anchors:
        if not attributes.get("href"):
            continue
        url, fragment = urldefrag(urljoin(page_url, attributes["href"]))
        hashes = dict([fragment.split("=", 1)]) if "=" in fragment else {}
        yanked = attributes.get("data-yanked")
        found.append(
            (
                shown or url.rsplit("/", 1)[-1],
                url,
                hashes,
                attributes.get("data-requires-python"),
                yanked if yanked else ("data-yanked" in attributes),
            )
        )
    return found


def _from_json(page_url: str, document: dict) -> list[tuple[str, str, dict, str | None, object]]:
    return [
        (
            f["filename"],
            urljoin(page_url, f["url"]),
            f.get("hashes") or {},
            f.get("requires-python"),
            f.get("yanked", False),
        )
        for f in document.get("files", [])
    ]


class Upstream:
    """Lists and files of `index_url`, the files cached in `cache_dir` by hash."""

    def __init__(self, index_url: str, cache_dir: Path, listing_ttl: int, max_file_size: int):
        self.index_url = index_url.rstrip("/") + "/"
        self.cache_dir = cache_dir
        self.listing_ttl = listing_ttl
        self.max_file_size = max_file_size
        self._lists: dict[str, tuple[float, list[IndexFile]]] = {}
        # The host's own trust store (as pip's on Debian), not httpx's bundled one: a site
        # whose upstream or proxy is signed by its own authority is trusted as the host is.
        trust = ssl.create_default_context()
        self._http = httpx.AsyncClient(timeout=TIMEOUT, follow_redirects=True, verify=trust)

    async def files(self, name: str) -> list[IndexFile]:
        """The files of the package `name` (normalized, and allowed: the caller checks)."""
        kept = self._lists.get(name)
        if kept and time.monotonic() - kept[0] < self.listing_ttl:
            return kept[1]
        page_url = f"{self.index_url}{name}/"
        try:
            reply = await self._http.get(page_url, headers={"Accept": ACCEPT})
        except httpx.HTTPError as error:
            raise UpstreamError(
                f"the upstream index did not answer for '{name}': {error}"
            ) from None
        if reply.status_code == 404:
            listed = []
        elif reply.status_code != 200:
            raise UpstreamError(f"the upstream index answered {reply.status_code} for '{name}'")
        elif reply.headers.get("content-type", "").startswith(JSON_TYPE):
            listed = _from_json(str(reply.url), json.loads(reply.text))
        else:
            listed = _from_html(str(reply.url), reply.text)
        files = [
            IndexFile(filename, url, hashes["sha256"].lower(), requires, yanked)
            for filename, url, hashes, requires, yanked in listed
            if "sha256" in hashes
        ]
        if len(files) < len(listed):
            log.warning(
                "%s: %d of %d upstream files carry no SHA-256 and are not offered",
                name,
                len(listed) - len(files),
                len(listed),
            )
        self._lists[name] = (time.monotonic(), files)
        return files

    def cached(self, file: IndexFile) -> Path:
        return self.cache_dir / file.sha256[:2] / file.sha256 / file.filename

    async def fetch(self, file: IndexFile) -> Path:
        """The file, from the cache or else from upstream, its SHA-256 checked."""
        path = self.cached(file)
        if path.is_file():
            return path
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{file.filename}.{os.getpid()}.{time.monotonic_ns()}")
        digest, size = hashlib.sha256(), 0
        try:
            async with self._http.stream("GET", file.url) as reply:
                if reply.status_code != 200:
                    raise UpstreamError(
                        f"the upstream index answered {reply.status_code} for {file.filename}"
                    )
                with open(partial, "wb") as out:
                    async for chunk in reply.aiter_bytes(1024 * 1024):
                        size += len(chunk)
                        if size > self.max_file_size:
                            raise UpstreamError(
                                f"{file.filename} is larger than packages.max_file_size "
                                f"({self.max_file_size} bytes)"
                            )
                        digest.update(chunk)
                        out.write(chunk)
            if digest.hexdigest() != file.sha256:
                raise UpstreamError(
                    f"{file.filename} from upstream does not match its SHA-256 "
                    f"({digest.hexdigest()} is not {file.sha256}): not kept, not served"
                )
            partial.replace(path)
        except httpx.HTTPError as error:
            raise UpstreamError(f"fetching {file.filename} from upstream failed: {error}") from None
        finally:
            partial.unlink(missing_ok=True)
        return path

    async def close(self) -> None:
        await self._http.aclose()
