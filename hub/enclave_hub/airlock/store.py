"""Where the airlock keeps files: snapshots by content, and each requester's outbox.

Snapshots are kept by their SHA-256 (`blobs/<hash>`), written once and never changed, so what
the checkers review is what was sent, whatever happens to the file in the session afterwards.
A release copies the approved snapshots to `outbox/<requester>/<request>/` with the release
record beside them. Everything here is readable by the service's user only.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path, PurePosixPath
from typing import BinaryIO

CHUNK = 1024 * 1024
NAME_PART = re.compile(r"^[^\x00-\x1f\x7f/\\]{1,255}$")
RECORD_NAME = "release.json"


class BadName(ValueError):
    """A file name that cannot be used; the message says why."""


class TooLarge(ValueError):
    """More bytes than the limit."""


def check_name(name: str) -> str:
    """A file's name in a request: a relative path, each part printable, no `.` or `..`."""
    if not isinstance(name, str) or not name or len(name) > 1000:
        raise BadName(f"file name {name!r:.80} must be 1 to 1000 characters")
    path = PurePosixPath(name)
    if path.is_absolute() or any(p in (".", "..") or not NAME_PART.match(p) for p in path.parts):
        raise BadName(
            f"file name {name!r:.80} must be a relative path without '..', control characters "
            "or backslashes"
        )
    if str(path) != name or name == RECORD_NAME:
        raise BadName(f"file name {name!r:.80} is not allowed as written")
    return name


def _private_folder(path: Path) -> Path:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path


class AirlockStore:
    def __init__(self, folder: Path):
        self.folder = _private_folder(folder)
        self.blobs = _private_folder(folder / "blobs")
        self.incoming = _private_folder(folder / "incoming")
        self.outboxes = _private_folder(folder / "outbox")

    def put(self, source: BinaryIO, limit: int) -> tuple[str, int]:
        """Keep a snapshot of `source`: its SHA-256 and size. TooLarge past `limit` bytes."""
        digest, size = hashlib.sha256(), 0
        fd, staged = tempfile.mkstemp(dir=self.incoming)
        try:
            with os.fdopen(fd, "wb") as out:
                while chunk := source.read(CHUNK):
                    size += len(chunk)
                    if size > limit:
                        raise TooLarge(f"more than {limit} bytes")
                    digest.update(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            sha256 = digest.hexdigest()
            os.replace(staged, self.blob(sha256))  # the same bytes, if it was there already
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(staged)
        return sha256, size

    def blob(self, sha256: str) -> Path:
        if not re.fullmatch(r"[0-9a-f]{64}", sha256):
            raise BadName(f"{sha256!r:.80} is not a SHA-256")
        return self.blobs / sha256

    def outbox(self, requester: str, request_id: int) -> Path:
        return self.outboxes / requester / str(request_id)

    def release(
        self, requester: str, request_id: int, files: list[tuple[str, str]], record: dict
    ) -> Path:
        """Copy the approved snapshots (name, sha256) into the outbox with the release record;
        the folder appears whole or not at all."""
        target = self.outbox(requester, request_id)
        staging = _private_folder(target.parent / f".{request_id}.staging")
        for name, sha256 in files:
            path = staging / check_name(name)
            _private_folder(path.parent)
            shutil.copyfile(self.blob(sha256), path)
            os.chmod(path, 0o600)
        record_path = staging / RECORD_NAME
        record_path.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
        os.chmod(record_path, 0o600)
        os.replace(staging, target)
        return target

    def withdraw(self, requester: str, request_id: int) -> None:
        """Remove a release that could not be recorded."""
        shutil.rmtree(self.outbox(requester, request_id), ignore_errors=True)

    def released_file(self, requester: str, request_id: int, name: str) -> Path:
        """A file of a release, by the name the release record gives it."""
        return self.outbox(requester, request_id) / (
            RECORD_NAME if name == RECORD_NAME else check_name(name)
        )
