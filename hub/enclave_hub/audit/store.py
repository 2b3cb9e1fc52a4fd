"""The audit log on disk: canonical JSON records in append-only, framed segment files.

Each record is framed as [length: u32][crc32: u32][payload] and carries its sequence number
and the leaf hash of the record before it, so a verifier can name the first record that is
missing, moved or altered. Appends are acknowledged only after fsync; concurrent appends share
one write and one fsync (group commit). On opening, a torn tail left by a crash is truncated,
and the truncation is itself recorded.
"""

from __future__ import annotations

import contextlib
import json
import os
import struct
import threading
import zlib
from array import array
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path

from .merkle import TreeBuilder, leaf_hash

FRAME = struct.Struct(">II")
SEGMENT_BYTES = 64 * 1024 * 1024
SEGMENT_SUFFIX = ".seg"


class LogUnwritable(Exception):
    """The log cannot be written (disk full, I/O error): audited actions must be refused."""


def canonical(record: dict) -> bytes:
    """The one byte form of a record: sorted keys, no spaces, UTF-8."""
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def frame(payload: bytes) -> bytes:
    return FRAME.pack(len(payload), zlib.crc32(payload)) + payload


@dataclass(frozen=True)
class Frame:
    """One frame as found on disk: its payload, or None where it is damaged."""

    segment: Path
    offset: int
    end: int
    payload: bytes | None


def read_frames(segment: Path) -> Iterator[Frame]:
    """Every frame of a segment; a damaged one is yielded with no payload, and ends it."""
    data = segment.read_bytes()
    offset = 0
    while offset < len(data):
        if offset + FRAME.size > len(data):
            yield Frame(segment, offset, len(data), None)
            return
        length, checksum = FRAME.unpack_from(data, offset)
        end = offset + FRAME.size + length
        payload = data[offset + FRAME.size : end]
        if end > len(data) or zlib.crc32(payload) != checksum:
            yield Frame(segment, offset, len(data), None)
            return
        yield Frame(segment, offset, end, payload)
        offset = end


def segments(folder: Path) -> list[Path]:
    return sorted(folder.glob(f"*{SEGMENT_SUFFIX}"))


@dataclass
class _Pending:
    event: dict
    result: Future = field(default_factory=Future)  # the sequence number, once durable


class AuditStore:
    """Appends records durably; one writer thread does the writing and fsync for everyone."""

    def __init__(self, folder: Path, segment_bytes: int = SEGMENT_BYTES):
        self.folder = folder
        self.segment_bytes = segment_bytes
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.tree = TreeBuilder()
        self.last_leaf = b""
        # Where each record is: its segment (an index into self.segment_paths) and offset.
        self.segment_paths: list[Path] = []
        self._segment_of = array("l")
        self._offset_of = array("q")
        self._length_of = array("l")
        self._readers: dict[int, int] = {}  # read-only descriptors of segments, by number
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._pending: list[_Pending] = []
        self._closing = False
        truncated = self._recover()
        self._fd = self._open_segment()
        self._writer = threading.Thread(target=self._write_loop, name="audit-writer", daemon=True)
        self._writer.start()
        if truncated:
            self.append(
                {"action": "audit.recovered", "outcome": "torn-tail-truncated", "target": truncated}
            )

    # -- opening ---------------------------------------------------------------------------

    def _recover(self) -> str:
        """Rebuild the tree from disk; truncate a torn tail. Returns what was cut, if any."""
        found = segments(self.folder)
        cut = ""
        for index, segment in enumerate(found):
            for item in read_frames(segment):
                if item.payload is None:
                    if index != len(found) - 1:
                        # Damage before the last segment is not a crash: leave it for verify.
                        continue
                    cut = f"{segment.name}@{item.offset}+{item.end - item.offset}"
                    os.truncate(segment, item.offset)
                    break
                leaf = leaf_hash(item.payload)
                self.tree.add(leaf)
                self.last_leaf = leaf
                self._locate(segment, item.offset, len(item.payload))
        return cut

    def _locate(self, segment: Path, offset: int, length: int) -> None:
        if not self.segment_paths or self.segment_paths[-1] != segment:
            self.segment_paths.append(segment)
        self._segment_of.append(len(self.segment_paths) - 1)
        self._offset_of.append(offset + FRAME.size)
        self._length_of.append(length)

    def read(self, seq: int) -> bytes:
        """The payload of a durable record, read from its place on disk."""
        segment = self._segment_of[seq]
        fd = self._readers.get(segment)
        if fd is None:
            fd = self._readers[segment] = os.open(self.segment_paths[segment], os.O_RDONLY)
        return os.pread(fd, self._length_of[seq], self._offset_of[seq])

    def _open_segment(self) -> int:
        found = segments(self.folder)
        if found and found[-1].stat().st_size < self.segment_bytes:
            path = found[-1]
        else:
            path = self.folder / f"{self.tree.size:012d}{SEGMENT_SUFFIX}"
        self._segment_path = path
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._fsync_folder()
        return fd

    def _fsync_folder(self) -> None:
        folder_fd = os.open(self.folder, os.O_RDONLY)
        try:
            os.fsync(folder_fd)
        finally:
            os.close(folder_fd)

    # -- appending -------------------------------------------------------------------------

    def submit(self, event: dict) -> Future:
        """Queue one event; the future gives its sequence number once it is on disk."""
        pending = _Pending(event)
        with self._wake:
            if self._closing:
                raise LogUnwritable("the audit log is closed")
            self._pending.append(pending)
            self._wake.notify()
        return pending.result

    def append(self, event: dict) -> int:
        """Write one event; return its sequence number once it is on disk."""
        return self.submit(event).result()

    def head(self) -> tuple[int, bytes]:
        """Size and root of the durable log."""
        with self._lock:
            return self.tree.size, self.tree.root()

    def _write_loop(self) -> None:
        while True:
            with self._wake:
                while not self._pending and not self._closing:
                    self._wake.wait()
                batch, self._pending = self._pending, []
                if not batch and self._closing:
                    return
            self._write_batch(batch)

    def _write_batch(self, batch: list[_Pending]) -> None:
        size, last = self.tree.size, self.last_leaf
        leaves, chunks = [], []
        for item in batch:
            payload = canonical({**item.event, "seq": size + len(leaves), "prev": last.hex()})
            last = leaf_hash(payload)
            leaves.append(last)
            chunks.append(frame(payload))
        start = os.lseek(self._fd, 0, os.SEEK_END)
        try:
            unwritten = memoryview(b"".join(chunks))
            while unwritten:  # a short write (a nearly full disk) is followed by an error
                unwritten = unwritten[os.write(self._fd, unwritten) :]
            os.fsync(self._fd)
        except OSError as error:
            # Take back what may have been written in part, so the chain can continue later.
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, start)
            failure = LogUnwritable(f"the audit log cannot be written: {error.strerror}")
            for item in batch:
                item.result.set_exception(failure)
            return
        with self._lock:
            offset = start
            for leaf, chunk in zip(leaves, chunks, strict=True):
                self.tree.add(leaf)
                self._locate(self._segment_path, offset, len(chunk) - FRAME.size)
                offset += len(chunk)
            self.last_leaf = last
        for offset, item in enumerate(batch):
            item.result.set_result(size + offset)
        if start + sum(map(len, chunks)) >= self.segment_bytes:
            os.close(self._fd)
            self._fd = self._open_segment()

    def close(self) -> None:
        with self._wake:
            self._closing = True
            self._wake.notify()
        self._writer.join()
        os.close(self._fd)
        for fd in self._readers.values():
            os.close(fd)
