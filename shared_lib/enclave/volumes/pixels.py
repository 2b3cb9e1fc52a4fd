"""A DICOM file's pixels as frames of (rows, columns), read once per file.

Uncompressed pixel data is read straight from the file at the offset found while its header
was read (no second parse); anything else (compressed, deflated, colour, float) is decoded by
pydicom with the installed decoders. Bits above BitsStored are cleared (or sign-extended), so
overlay bits left in old files never reach the values.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import BinaryIO

import numpy as np
from pydicom.dataset import Dataset
from pydicom.pixels import pixel_array

PIXEL_DATA_TAG = {"<": b"\xe0\x7f\x10\x00", ">": b"\x7f\xe0\x00\x10"}
# Float Pixel Data (7FE0,0008) and Double Float Pixel Data (7FE0,0009): their sample size.
FLOAT_PIXEL_TAGS = {
    b"\xe0\x7f\x08\x00": 4,
    b"\x7f\xe0\x00\x08": 4,
    b"\xe0\x7f\x09\x00": 8,
    b"\x7f\xe0\x00\x09": 8,
}


@dataclass(frozen=True)
class PixelLayout:
    """How a file's frames are stored: enough to read and correct them."""

    frames: int
    rows: int
    columns: int
    bits_allocated: int
    bits_stored: int
    signed: bool
    offset: int | None  # where uncompressed frames begin in the file; None: let pydicom decode
    byte_order: str = "<"
    float_bytes: int = 0  # 4 or 8 for Float or Double Float Pixel Data; 0 for integers

    @property
    def dtype(self) -> np.dtype:
        kind = "i" if self.signed else "u"
        return np.dtype(f"{self.byte_order}{kind}{self.bits_allocated // 8}")

    @property
    def stored_range(self) -> tuple[int, int]:
        """The smallest and largest value a pixel can hold."""
        if self.signed:
            return -(2 ** (self.bits_stored - 1)), 2 ** (self.bits_stored - 1) - 1
        return 0, 2**self.bits_stored - 1


def pixel_layout(header: Dataset, stream: BinaryIO) -> PixelLayout:
    """The layout of the file whose header was just read from `stream`, stopped before its
    pixels (so the stream stands at the pixel data element, if there is one)."""
    layout = PixelLayout(
        frames=int(header.get("NumberOfFrames", 1) or 1),
        rows=int(header.get("Rows", 0)),
        columns=int(header.get("Columns", 0)),
        bits_allocated=int(header.get("BitsAllocated", 16) or 16),
        bits_stored=int(header.get("BitsStored", 16) or 16),
        signed=bool(int(header.get("PixelRepresentation", 0) or 0)),
        offset=None,
    )
    here = stream.tell()
    float_bytes = FLOAT_PIXEL_TAGS.get(stream.read(4), 0)
    stream.seek(here)
    if float_bytes:  # decoded by pydicom, as the floats they are
        return replace(layout, float_bytes=float_bytes, bits_allocated=8 * float_bytes)
    syntax = getattr(header.get("file_meta"), "TransferSyntaxUID", None)
    plain = (
        syntax is not None
        and not syntax.is_compressed
        and not syntax.is_deflated
        and int(header.get("SamplesPerPixel", 1) or 1) == 1
        and layout.bits_allocated in (8, 16, 32)
    )
    if not plain:
        return layout
    byte_order = "<" if syntax.is_little_endian else ">"
    element = stream.read(12)
    if element[:4] != PIXEL_DATA_TAG[byte_order]:
        return layout
    if syntax.is_implicit_VR:
        length_bytes, start = element[4:8], 8
    else:
        length_bytes, start = element[8:12], 12
    length = int.from_bytes(length_bytes, "little" if byte_order == "<" else "big")
    expected = layout.frames * layout.rows * layout.columns * layout.bits_allocated // 8
    if length not in (expected, expected + 1):
        return layout
    position = stream.tell() - len(element) + start
    return replace(layout, offset=position, byte_order=byte_order)


def read_frames(path: Path, layout: PixelLayout) -> np.ndarray:
    """Every frame of the file at `path`, shaped (frames, rows, columns), in native byte
    order; raises ValueError when its pixel data cannot be read."""
    shape = (layout.frames, layout.rows, layout.columns)
    if layout.offset is not None:
        count = layout.frames * layout.rows * layout.columns
        frames = np.fromfile(path, layout.dtype, count=count, offset=layout.offset)
        if frames.size < count:
            raise ValueError(
                f"{path}: its pixel data is truncated ({frames.size} of {count} pixels)"
            )
        frames = frames.reshape(shape).astype(layout.dtype.newbyteorder("="), copy=False)
    else:
        try:
            frames = pixel_array(path).reshape(shape)
        except (ValueError, RuntimeError, NotImplementedError) as error:
            raise ValueError(f"{path}: its pixel data cannot be decoded ({error})") from None
    unused = frames.dtype.itemsize * 8 - layout.bits_stored
    if unused > 0 and frames.dtype.kind in "iu":
        np.left_shift(frames, unused, out=frames)
        np.right_shift(frames, unused, out=frames)
    return frames
