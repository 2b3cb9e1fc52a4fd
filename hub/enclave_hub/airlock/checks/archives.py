"""Archives (zip, tar) are expanded safely, and each member is checked as a file of its own.

Refused as a whole: a member whose name would land outside the archive's folder (absolute,
`..`), links and devices, encrypted members, archives inside archives, a VCF Zarr store (known
by its metadata members: see `genetics`), more than `max_archive_members` members, more than
`max_expanded_size` expanded, and a member expanding more than `max_compression_ratio` times
(a zip bomb). Sizes are counted while expanding, not taken from the archive's own claims.
"""

from __future__ import annotations

import shutil
import stat
import tarfile
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import IO

from . import FileReport, Finding, Rules
from .genetics import REFUSED, is_vcf_zarr_part
from .kinds import HEAD_BYTES, classify

CHUNK = 1024 * 1024


class Refused(Exception):
    """The archive cannot be expanded safely; the message says why."""


def unsafe_name(name: str) -> bool:
    """Would a member of this name be written outside the folder the archive is expanded in?"""
    if not name or "\\" in name or name.startswith("/"):
        return True
    return (len(name) > 1 and name[1] == ":") or ".." in PurePosixPath(name).parts


class _Member:
    def __init__(self, name: str, declared: int, stored: int, open_: Callable[[], IO[bytes]]):
        self.name, self.declared, self.stored, self.open = name, declared, stored, open_


def _zip_members(archive: zipfile.ZipFile) -> Iterator[_Member]:
    for info in archive.infolist():
        if unsafe_name(info.filename):
            raise Refused(f"member '{info.filename}' would be written outside the archive")
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            raise Refused(f"member '{info.filename}' is a link")
        if info.flag_bits & 0x1:
            raise Refused(f"member '{info.filename}' is encrypted and cannot be checked")
        if info.is_dir():
            continue
        yield _Member(
            info.filename, info.file_size, info.compress_size, lambda i=info: archive.open(i)
        )


def _tar_members(archive: tarfile.TarFile, size: int) -> Iterator[_Member]:
    for info in archive:
        if unsafe_name(info.name):
            raise Refused(f"member '{info.name}' would be written outside the archive")
        if info.issym() or info.islnk():
            raise Refused(f"member '{info.name}' is a link")
        if info.isdir():
            continue
        if not info.isfile():
            raise Refused(f"member '{info.name}' is a device or pipe")
        yield _Member(info.name, info.size, size, lambda i=info: archive.extractfile(i))


@contextmanager
def _opened(path: Path):
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            yield _zip_members(archive)
    elif tarfile.is_tarfile(path):
        with tarfile.open(path) as archive:
            yield _tar_members(archive, path.stat().st_size)
    else:
        raise Refused("not a zip or tar archive that can be read")


def _expand(member: _Member, into: Path, budget: int, ratio: int) -> int:
    """Write one member out, counting as it goes; the bytes it took."""
    if member.declared > ratio * max(member.stored, 1):
        raise Refused(
            f"member '{member.name}' expands {member.declared // max(member.stored, 1)} times "
            f"(more than {ratio}): refused as a possible archive bomb"
        )
    written = 0
    with member.open() as source, into.open("wb") as out:
        while chunk := source.read(CHUNK):
            written += len(chunk)
            if written > budget or written > ratio * max(member.stored, 1):
                raise Refused(
                    f"member '{member.name}' expands past the limits: refused as a possible "
                    "archive bomb"
                )
            out.write(chunk)
    return written


def check_archive(
    name: str, path: Path, rules: Rules, check_member: Callable[[str, Path], FileReport]
) -> list[Finding]:
    """Expand into a private folder and check each member; refuse the archive as a whole if
    any limit is passed."""
    folder = Path(tempfile.mkdtemp(prefix="airlock-archive-"))
    reports = []
    try:
        with _opened(path) as members:
            budget = rules.max_expanded_size
            for count, member in enumerate(members, 1):
                if count > rules.max_archive_members:
                    raise Refused(f"more than {rules.max_archive_members} members")
                target = folder / f"member-{count}"
                budget -= _expand(member, target, budget, rules.max_compression_ratio)
                if is_vcf_zarr_part(member.name, target):
                    store = f"{REFUSED['vcf-zarr']} ('{member.name}' is its metadata)"
                    return [Finding("file-type", "fail", store)]
                with target.open("rb") as head:
                    if classify(member.name, head.read(HEAD_BYTES)) in ("archive", "compressed"):
                        raise Refused(f"member '{member.name}' is an archive inside the archive")
                reports.append(check_member(member.name, target))
                target.unlink()
    except (Refused, zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as error:
        return [Finding("archive", "fail", f"refused: {error}")]
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    findings = [
        Finding(f.rule, f.outcome, f"{report.name}: {f.message}")
        for report in reports
        for f in report.findings
    ]
    return [Finding("archive", "pass", f"{len(reports)} member(s) expanded safely"), *findings]
