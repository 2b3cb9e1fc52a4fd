"""BGZF files (bgzip's blocked gzip) read a run of blocks at a time, so that several processes
can read one file: the table of blocks from their headers, and blocks inflated by libdeflate
with the size each block's trailer states."""

from __future__ import annotations

import mmap
import os
from dataclasses import dataclass
from pathlib import Path

import deflate
import numba
import numpy as np

MAGIC = b"\x1f\x8b\x08\x04"  # gzip, deflate, with an extra field
MAGIC_BYTES = np.frombuffer(MAGIC, dtype=np.uint8)
HEADER_BYTES = 18  # gzip header with BGZF's 6-byte BC subfield
TRAILER_BYTES = 8  # CRC32, then the inflated size


class NotBgzf(ValueError):
    """The file is not a run of BGZF blocks."""


@dataclass(frozen=True)
class Blocks:
    """Where each block of a BGZF file lies: `offsets[i]` in the file, `sizes[i]` bytes there,
    inflating to `starts[i + 1] - starts[i]` bytes from `starts[i]` of the text."""

    path: Path
    offsets: np.ndarray
    sizes: np.ndarray
    starts: np.ndarray

    def __len__(self) -> int:
        return len(self.offsets)

    @property
    def text_bytes(self) -> int:
        return int(self.starts[-1])

    def block_of(self, text_offset: int) -> int:
        """The block whose text holds `text_offset`."""
        return int(np.searchsorted(self.starts, text_offset, side="right")) - 1


def block_table(path: Path) -> Blocks:
    """The blocks of `path`, from their headers and trailers (nothing inflated)."""
    with path.open("rb") as file:
        if os.fstat(file.fileno()).st_size == 0:
            raise NotBgzf(f"{path}: no BGZF block at byte 0")
        with mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as data:
            view = np.frombuffer(data, dtype=np.uint8)
            try:
                offsets, sizes, text_sizes, bad = _walk_blocks(view, MAGIC_BYTES)
            finally:
                del view  # the map closes only once no array points into it
    if bad >= 0:
        raise NotBgzf(f"{path}: no BGZF block at byte {bad}")
    starts = np.zeros(len(offsets) + 1, dtype=np.int64)
    np.cumsum(text_sizes, out=starts[1:])
    return Blocks(path, offsets, sizes, starts)


@numba.njit(cache=True, nogil=True)
def _walk_blocks(data, magic):
    """Each block's offset, size and inflated size, read from header to header; and the
    offset where no block header is found (-1 if every one is)."""
    offsets, sizes, text_sizes = [], [], []
    offset = 0
    while offset < len(data):
        if offset + HEADER_BYTES > len(data):
            return _arrays(offsets, sizes, text_sizes, offset)
        for k in range(4):
            if data[offset + k] != magic[k]:
                return _arrays(offsets, sizes, text_sizes, offset)
        if data[offset + 12] != 66 or data[offset + 13] != 67:  # "BC"
            return _arrays(offsets, sizes, text_sizes, offset)
        size = np.int64(data[offset + 16]) + 256 * np.int64(data[offset + 17]) + 1
        end = offset + size
        if end > len(data) or size < HEADER_BYTES + TRAILER_BYTES:
            return _arrays(offsets, sizes, text_sizes, offset)
        text_size = np.int64(0)
        for k in range(4):
            text_size += np.int64(data[end - 4 + k]) << (8 * k)
        offsets.append(offset)
        sizes.append(size)
        text_sizes.append(text_size)
        offset = end
    return _arrays(offsets, sizes, text_sizes, -1)


@numba.njit(cache=True, nogil=True)
def _arrays(offsets, sizes, text_sizes, bad):
    return (
        np.array(offsets, dtype=np.int64),
        np.array(sizes, dtype=np.int64),
        np.array(text_sizes, dtype=np.int64),
        bad,
    )


def inflate(blocks: Blocks, first: int, stop: int) -> np.ndarray:
    """The text of blocks `first` to `stop` (exclusive), as bytes in a uint8 array."""
    out = np.empty(int(blocks.starts[stop] - blocks.starts[first]), dtype=np.uint8)
    begin = int(blocks.offsets[first])
    end = int(blocks.offsets[stop - 1] + blocks.sizes[stop - 1]) if stop > first else begin
    with blocks.path.open("rb") as file:
        file.seek(begin)
        data = file.read(end - begin)
    at = 0
    for block in range(first, stop):
        local = int(blocks.offsets[block]) - begin
        size = int(blocks.sizes[block])
        text_size = int(blocks.starts[block + 1] - blocks.starts[block])
        if text_size:
            payload = data[local + HEADER_BYTES : local + size - TRAILER_BYTES]
            out[at : at + text_size] = np.frombuffer(
                deflate.deflate_decompress(payload, text_size), dtype=np.uint8
            )
        at += text_size
    return out
