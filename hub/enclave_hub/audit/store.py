"""The audit log on disk: canonical JSON records in append-only, framed segment files.

One process writes a log at a time: it holds the folder's writer lock while the store is open.
Each record is framed as [length: u32][crc32: u32][payload] and carries its sequence number
and the leaf hash of the record before it, so a verifier can name the first record that is
missing, moved or altered. Appends are acknowledged only after fsync; concurrent appends share
one write and one fsync (group commit). On opening, a torn tail left by a crash is truncated,
and the truncation is itself recorded. After a failed write or fsync nothing more is written on
that descriptor: before the next batch, the last segment is reopened, cut back to what was
last made durable (a failed fsync may have dropped the pages after it), checked frame by frame
against the records acknowledged, and the fault is recorded; until that succeeds every
append is refused.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import struct
import threading
import time
import zlib
from array import array
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path

from .checkpoints import Checkpoint
from .merkle import TreeBuilder, leaf_hash
from .witness import check_log

FRAME = struct.Struct(">II")
SEGMENT_BYTES = 64 * 1024 * 1024
SEGMENT_SUFFIX = ".seg"
SERVICE_ACTOR = "enclave-audit"  # the actor of the records the audit service makes itself
WRITER_LOCK = ".writer.lock"  # held (flock) by the one process that writes the log


class LogUnwritable(Exception):
    """The log cannot be written (disk full, I/O error): audited actions must be refused."""


class LogInUse(LogUnwritable):
    """Another process writes the log: the audit service of a running Enclave."""


def _take_writer_lock(folder: Path) -> int:
    """The log's writer lock, or LogInUse; the kernel lets go of it when the process ends."""
    fd = os.open(folder / WRITER_LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise LogInUse(
            f"the audit log {folder} is being written by another process (the audit service "
            "of a running Enclave): stop Enclave first"
        ) from None
    return fd


class FileOps:
    """The calls that make records durable; a fault injector stands in for them in tests."""

    write = staticmethod(os.write)
    fsync = staticmethod(os.fsync)
    ftruncate = staticmethod(os.ftruncate)


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

    def __init__(
        self, folder: Path, segment_bytes: int = SEGMENT_BYTES, ops: FileOps | None = None
    ):
        self.folder = folder
        self.segment_bytes = segment_bytes
        self.ops = ops or FileOps()
        self._fault = ""  # the last write or fsync error, until the segment is checked again
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._writer_lock = _take_writer_lock(folder)
        self.tree = TreeBuilder()
        self.last_leaf = b""
        # Where each record is: its segment (an index into self.segment_paths) and offset.
        self.segment_paths: list[Path] = []
        self._first_of: list[int] = []  # the first record of each of self.segment_paths
        self._segment_of = array("l")
        self._offset_of = array("q")
        self._length_of = array("l")
        self._readers: dict[int, int] = {}  # read-only descriptors of segments, by number
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._pending: list[_Pending] = []
        self._closing = False
        try:
            truncated = self._recover()
            self._fd = self._open_segment()
        except BaseException:
            os.close(self._writer_lock)  # for the next open, a restart's, in this process too
            raise
        self._writer = threading.Thread(target=self._write_loop, name="audit-writer", daemon=True)
        self._writer.start()
        if truncated:
            record = {
                "actor": SERVICE_ACTOR,
                "action": "audit.recovered",
                "outcome": "torn-tail-truncated",
                "target": truncated,
            }
            try:
                self.append(record)
            except BaseException:
                self.close()
                raise

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
            self._first_of.append(len(self._segment_of))
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
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            self._segment_path, self._durable_end = path, os.fstat(fd).st_size
            self._fsync_folder()
        except OSError:
            os.close(fd)
            raise
        return fd

    def _reopen_segment(self) -> int:
        """A new descriptor on the last segment, cut back to its durable end and checked to
        hold exactly the records acknowledged in it; OSError or LogUnwritable if not."""
        self._close_segment()
        path = self._segment_path
        fd = os.open(path, os.O_RDWR | os.O_APPEND)
        try:
            self.ops.ftruncate(fd, self._durable_end)
            self.ops.fsync(fd)
            in_segment = 0
            if self.segment_paths and self.segment_paths[-1] == path:
                in_segment = self.tree.size - self._first_of[-1]
            found = list(read_frames(path))
            if (
                len(found) != in_segment
                or any(item.payload is None for item in found)
                or (found and leaf_hash(found[-1].payload) != self.last_leaf)
            ):
                raise LogUnwritable(
                    f"{path.name} does not hold the {in_segment} records acknowledged in it"
                )
        except (OSError, LogUnwritable):
            os.close(fd)
            raise
        return fd

    def _close_segment(self) -> None:
        if self._fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = -1

    def _fsync_folder(self) -> None:
        folder_fd = os.open(self.folder, os.O_RDONLY)
        try:
            os.fsync(folder_fd)
        finally:
            os.close(folder_fd)

    # -- appending -------------------------------------------------------------------------

    def submit(self, event: dict) -> Future:
        """Queue one event; the future gives its sequence number once it is on disk."""
        (result,) = self.submit_many([event])
        return result

    def submit_many(self, events: list[dict]) -> list[Future]:
        """Queue events together: they are written in one batch, in order, and their futures
        are settled in order, each giving its sequence number once on disk."""
        pending = [_Pending(event) for event in events]
        with self._wake:
            if self._closing:
                raise LogUnwritable("the audit log is closed")
            self._pending.extend(pending)
            self._wake.notify()
        return [item.result for item in pending]

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
        if self._fault:
            self._restore()
        try:
            if self._fault:
                raise LogUnwritable(f"the audit log cannot be written: {self._fault}")
            self._write(batch)
        except OSError as error:
            self._fault = error.strerror or str(error)
            failure = LogUnwritable(f"the audit log cannot be written: {self._fault}")
        except LogUnwritable as error:
            failure = error
        else:
            return
        for item in batch:
            item.result.set_exception(failure)

    def _restore(self) -> None:
        """After a fault: reopen and check the last segment, then record the fault."""
        try:
            self._fd = self._reopen_segment()
            fault = {
                "time": time.time(),
                "actor": SERVICE_ACTOR,
                "action": "audit.fault",
                "outcome": "recovered",
                "target": self._segment_path.name,
                "reason": self._fault,
                "detail": {"kept_bytes": self._durable_end},
            }
            self._write([_Pending(fault)])
        except OSError as error:
            self._fault = error.strerror or str(error)
        except LogUnwritable as error:
            self._fault = str(error)
        else:
            self._fault = ""

    def _write(self, batch: list[_Pending]) -> None:
        """Write and fsync one batch, then acknowledge it; OSError leaves it unacknowledged."""
        if self._durable_end >= self.segment_bytes:
            self._close_segment()
            self._fd = self._open_segment()
        size, last = self.tree.size, self.last_leaf
        leaves, chunks = [], []
        for item in batch:
            payload = canonical({**item.event, "seq": size + len(leaves), "prev": last.hex()})
            last = leaf_hash(payload)
            leaves.append(last)
            chunks.append(frame(payload))
        start = self._durable_end
        unwritten = memoryview(b"".join(chunks))
        while unwritten:  # a short write (a nearly full disk) is followed by an error
            unwritten = unwritten[self.ops.write(self._fd, unwritten) :]
        self.ops.fsync(self._fd)
        self._durable_end = start + sum(map(len, chunks))
        with self._lock:
            offset = start
            for leaf, chunk in zip(leaves, chunks, strict=True):
                self.tree.add(leaf)
                self._locate(self._segment_path, offset, len(chunk) - FRAME.size)
                offset += len(chunk)
            self.last_leaf = last
        for offset, item in enumerate(batch):
            item.result.set_result(size + offset)

    def consistency_proof(self, old: int, new: int) -> list[bytes]:
        """The RFC 9162 proof that the durable log at size `old` is a prefix of it at `new`."""
        with self._lock:
            return self.tree.consistency_proof(old, new)

    def check_extends(self, checkpoint: Checkpoint) -> None:
        """Raise NotConsistent unless the durable log extends `checkpoint` (a witnessed one)."""
        with self._lock:
            check_log(checkpoint, self.tree)

    def close(self) -> None:
        with self._wake:
            self._closing = True
            self._wake.notify()
        self._writer.join()
        self._close_segment()
        for fd in self._readers.values():
            os.close(fd)
        os.close(self._writer_lock)
