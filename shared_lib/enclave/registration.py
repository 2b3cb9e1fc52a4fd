"""Adding objects to a dataset so that a half-written object is never registered.

An object is written into a staging folder inside the dataset folder, then moved into place
and entered in `dataset.json` in one step under the dataset's lock; a failure on the way
removes the staging folder and leaves `dataset.json` as it was. `dataset.json` itself is
replaced atomically (written beside, fsynced, renamed).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import secrets
import shutil
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from .catalog import MANIFEST, CatalogError, check_id, contained
from .persons import add_persons

LOCK = ".dataset.lock"
SIZE_UNITS = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12}
SIZE_UNITS |= {"kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
STAGING_PREFIX = ".staging-"
FAILED = "FAILED  "  # how a source's failure is reported


def first_line(error: Exception) -> str:
    """An exception's message on one line, for a report that names the source before it."""
    text = str(error).strip()
    return " ".join(text.splitlines()[0].split()) if text else type(error).__name__


def memory_limit_bytes(memory_limit: str) -> int:
    """An ingest's `--memory-limit` ('4GB', '512MiB') in bytes."""
    found = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-z]+)\s*", memory_limit.lower())
    if found is None or found.group(2) not in SIZE_UNITS:
        raise CatalogError(f"memory limit {memory_limit!r}: not a size such as 4GB or 512MiB")
    return int(float(found.group(1)) * SIZE_UNITS[found.group(2)])


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class Outcome:
    """What became of one source given to an ingest (a file, or a DICOM series by name): its
    object, or why it failed."""

    source: Path | str
    object_id: str | None = None
    error: str | None = None


def file_sha256(path: Path) -> str:
    return "sha256:" + _content_sha256(path)


def tree_digest(path: Path) -> str:
    """sha256 over every file of a folder (relative path and content), in path order; the
    files hashed on as many threads as the process has cores (hashlib lets go of the GIL)."""
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file())
    with ThreadPoolExecutor(len(os.sched_getaffinity(0))) as pool:
        for file, content in zip(files, pool.map(_content_sha256, files), strict=True):
            digest.update(f"{file.relative_to(path).as_posix()}\0{content}\n".encode())
    return "sha256:" + digest.hexdigest()


def _content_sha256(path: Path) -> str:
    with path.open("rb") as stream:
        return hashlib.file_digest(stream, "sha256").hexdigest()


@contextlib.contextmanager
def dataset_lock(folder: Path) -> Iterator[None]:
    with (folder / LOCK).open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _write_manifest(folder: Path, manifest: dict) -> None:
    target = folder / MANIFEST
    temporary = folder / f".{MANIFEST}.{secrets.token_hex(4)}"
    with temporary.open("w") as stream:
        json.dump(manifest, stream, indent=2, sort_keys=True)
        stream.write("\n")
        stream.flush()
        os.fsync(stream.fileno())
    os.replace(temporary, target)
    directory = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


class DatasetWriter:
    """Writes objects into one dataset folder, which exists only once an object is in it: an
    ingest that registers nothing leaves no folder behind."""

    def __init__(self, data_root: Path, dataset_id: str, kind: str):
        check_id(dataset_id, "dataset")
        self.id = dataset_id
        self.kind = kind
        try:
            data_root.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise CatalogError(f"{error.filename}: cannot be created ({error.strerror})") from None
        self.folder = contained(data_root, dataset_id)

    def manifest(self) -> dict:
        path = self.folder / MANIFEST
        if path.is_file():
            return json.loads(path.read_text())
        return {"id": self.id, "title": self.id, "kind": self.kind, "version": 0, "objects": {}}

    def has(self, object_id: str) -> bool:
        return object_id in self.manifest()["objects"]

    @contextlib.contextmanager
    def staging(self, object_id: str) -> Iterator[Path]:
        """A fresh folder to write one object into; removed unless `register` moved it."""
        check_id(object_id, "object")
        created = not self.folder.exists()
        self.folder.mkdir(exist_ok=True)
        staging = self.folder / f"{STAGING_PREFIX}{object_id}-{secrets.token_hex(4)}"
        staging.mkdir()
        try:
            yield staging
        finally:
            shutil.rmtree(staging, ignore_errors=True)
            if created and not (self.folder / MANIFEST).exists():
                with contextlib.suppress(OSError):  # empty: nothing was registered
                    self.folder.rmdir()

    def register(
        self, object_id: str, staged: Path, file_name: str, entry: dict, persons: Iterable[str]
    ) -> dict:
        """Move a staged object into place and enter it in `dataset.json`, its `persons`
        (pseudonyms) in `persons.parquet`; the entry as written."""
        checksum = tree_digest(staged)
        with dataset_lock(self.folder):
            manifest = self.manifest()
            if object_id in manifest["objects"]:
                raise CatalogError(f"dataset {self.id!r} already has an object {object_id!r}")
            final = contained(self.folder, file_name)
            if final.exists():
                raise CatalogError(f"{final} is in the way (not registered in {MANIFEST})")
            add_persons(self.folder, object_id, entry["kind"], persons)
            os.rename(staged, final)
            entry = {**entry, "path": file_name, "checksum": checksum, "registered_at": now_iso()}
            manifest["objects"][object_id] = entry
            manifest["version"] = int(manifest.get("version", 0)) + 1
            manifest["updated_at"] = entry["registered_at"]
            try:
                _write_manifest(self.folder, manifest)
            except OSError:
                os.rename(final, staged)  # not registered: back to staging, removed there
                raise
        return entry

    def record_run(self, run: dict) -> None:
        """Add what one ingest did with each source (ingested, refused, skipped, and why) to
        `dataset.json`, when the dataset exists; an ingest that made none leaves nothing."""
        if not (self.folder / MANIFEST).exists():
            return
        with dataset_lock(self.folder):
            manifest = self.manifest()
            manifest.setdefault("ingests", []).append({"at": now_iso(), **run})
            _write_manifest(self.folder, manifest)
