"""The package index's upstream, against a real index served on this machine: lists read from
PEP 503 pages and PEP 691 JSON, files fetched and kept by hash, a file whose hash does not match
or that is too large never kept, and a file with no hash never offered."""

from __future__ import annotations

import asyncio
import hashlib

import pytest
from package_upstream import serve_upstream

from enclave_hub.packages.upstream import IndexFile, Upstream, UpstreamError, _from_html, _from_json


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    upstream, server = serve_upstream(tmp_path_factory.mktemp("upstream"))
    yield upstream
    server.shutdown()


def _upstream(served, tmp_path, max_file_size: int = 1 << 20) -> Upstream:
    return Upstream(served.url, tmp_path / "cache", 600, max_file_size)


def run(coroutine):
    return asyncio.run(coroutine)


def test_a_list_is_read_and_a_file_fetched_checked_and_kept(served, tmp_path):
    async def go():
        upstream = _upstream(served, tmp_path)
        try:
            (file,) = await upstream.files("enclave-demo-stats")
            path = await upstream.fetch(file)
            again = await upstream.fetch(file)
            return file, path, again
        finally:
            await upstream.close()

    asked_before = len(served.asked)
    file, path, again = run(go())
    wheel = served.wheels["enclave-demo-stats"]
    assert file.filename == wheel.name and file.version == "1.0"
    assert file.sha256 == hashlib.sha256(wheel.read_bytes()).hexdigest()
    assert path.read_bytes() == wheel.read_bytes() and again == path
    # One list and one file asked upstream: the second fetch came from the cache.
    assert len(served.asked) - asked_before == 2


def test_a_file_that_does_not_match_its_hash_is_not_kept(served, tmp_path):
    async def go():
        upstream = _upstream(served, tmp_path)
        try:
            (file,) = await upstream.files("enclave-extra")
            forged = IndexFile(file.filename, file.url, "0" * 64)
            with pytest.raises(UpstreamError, match="does not match its SHA-256"):
                await upstream.fetch(forged)
            return upstream.cached(forged)
        finally:
            await upstream.close()

    kept = run(go())
    assert not kept.exists() and not any(kept.parent.iterdir())


def test_a_file_larger_than_the_limit_is_not_kept(served, tmp_path):
    async def go():
        upstream = _upstream(served, tmp_path, max_file_size=100)
        try:
            (file,) = await upstream.files("enclave-extra")
            with pytest.raises(UpstreamError, match=r"larger than packages\.max_file_size"):
                await upstream.fetch(file)
            return upstream.cached(file)
        finally:
            await upstream.close()

    assert not run(go()).exists()


def test_an_unknown_name_and_a_file_listed_without_its_hash_offer_nothing(served, tmp_path):
    async def go():
        upstream = _upstream(served, tmp_path)
        try:
            return await upstream.files("no-such-package"), await upstream.files("enclave-unhashed")
        finally:
            await upstream.close()

    assert run(go()) == ([], [])
    assert served.asked_about("enclave-unhashed") == ["/simple/enclave-unhashed/"]


def test_pep_503_pages_and_pep_691_documents_are_read_alike():
    page = (
        '<html><body><a href="../../f/pkg-1.0.tar.gz#sha256=AB12" data-requires-python="&gt;=3.9">'
        'pkg-1.0.tar.gz</a><a href="/f/pkg-0.9.tar.gz#md5=ff" data-yanked="broken">'
        "pkg-0.9.tar.gz</a></body></html>"
    )
    from_html = _from_html("https://index.example/simple/pkg/", page)
    assert from_html == [
        (
            "pkg-1.0.tar.gz",
            "https://index.example/f/pkg-1.0.tar.gz",
            {"sha256": "AB12"},
            ">=3.9",
            False,
        ),
        ("pkg-0.9.tar.gz", "https://index.example/f/pkg-0.9.tar.gz", {"md5": "ff"}, None, "broken"),
    ]
    document = {
        "files": [
            {
                "filename": "pkg-1.0.tar.gz",
                "url": "../../f/pkg-1.0.tar.gz",
                "hashes": {"sha256": "AB12"},
                "requires-python": ">=3.9",
            },
            {
                "filename": "pkg-0.9.tar.gz",
                "url": "/f/pkg-0.9.tar.gz",
                "hashes": {"md5": "ff"},
                "yanked": "broken",
            },
        ]
    }
    assert _from_json("https://index.example/simple/pkg/", document) == from_html
