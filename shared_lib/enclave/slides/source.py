"""Source slides as tiffslide opens them (Aperio SVS, generic tiled TIFF and the rest), with
what may be kept of their metadata.

Only the geometry and optics of a slide are kept: vendor, objective power, microns per pixel
and the levels. Everything else a vendor writes (file names, dates, users, barcodes, the label
and macro images) may identify a patient and is dropped; its names are recorded, never its
values.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tiffslide

KEPT_PROPERTIES = {
    "tiffslide.vendor": "vendor",
    "tiffslide.objective-power": "objective_power",
    "tiffslide.mpp-x": "mpp_x",
    "tiffslide.mpp-y": "mpp_y",
}
GEOMETRY_PREFIX = "tiffslide.level["  # level sizes and tiling: not about the patient
GEOMETRY_KEYS = {"tiffslide.series-index", "tiffslide.series-axes"}


class SlideError(Exception):
    """A slide that cannot be opened or read; the message names the file."""


@dataclass(frozen=True)
class SourceSlide:
    """An open source slide: its levels as (y, x, c) arrays, and what may be kept about it."""

    path: Path
    handle: tiffslide.TiffSlide
    descriptor: int = field(default=-1)  # for reading tiles from several threads at once

    @property
    def levels(self) -> list:
        """One array per level, (y, x, c) uint8, read lazily tile by tile."""
        group = self.handle.zarr_group
        return [group[str(level)] for level in range(self.handle.level_count)]

    @property
    def level_downsamples(self) -> tuple[float, ...]:
        return tuple(self.handle.level_downsamples)

    @property
    def mpp(self) -> tuple[float, float] | None:
        """Microns per pixel at level 0 as (y, x), or None when the file does not say."""
        properties = self.handle.properties
        x, y = properties.get("tiffslide.mpp-x"), properties.get("tiffslide.mpp-y")
        if not x or not y:
            return None
        return float(y), float(x)

    def kept_metadata(self) -> dict:
        properties = self.handle.properties
        return {
            name: properties[key]
            for key, name in KEPT_PROPERTIES.items()
            if properties.get(key) is not None
        }

    def dropped_metadata(self) -> list[str]:
        """The names of the properties not copied (their values may identify a patient)."""
        return sorted(
            key
            for key, value in self.handle.properties.items()
            if value not in (None, "")
            and key not in KEPT_PROPERTIES
            and key not in GEOMETRY_KEYS
            and not key.startswith(GEOMETRY_PREFIX)
        )

    def dropped_images(self) -> list[str]:
        """The associated images (label, macro, thumbnail...), none of which is copied."""
        return sorted(self.handle.associated_images)

    def read_block(self, level: int, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        """Pixels (y1 - y0, x1 - x0, 3) of a level, decoded tile by tile with tifffile.

        What tiffslide's array view decodes, three times faster: the view goes through
        zarr-python for every tile. Levels that are not tiled go through the view.
        """
        page = self.tiled_page(level)
        if page is None:
            return np.asarray(self.levels[level][y0:y1, x0:x1, :3])
        tile_height, tile_width = page.tilelength, page.tilewidth
        across = math.ceil(page.imagewidth / tile_width)
        block = np.zeros((y1 - y0, x1 - x0, 3), np.uint8)
        for row in range(y0 // tile_height, math.ceil(y1 / tile_height)):
            for col in range(x0 // tile_width, math.ceil(x1 / tile_width)):
                index = row * across + col
                length = page.databytecounts[index]
                if not length:
                    continue  # an empty tile: the fill value
                data = os.pread(self.descriptor, length, page.dataoffsets[index])
                pixels = page.decode(data, index, jpegtables=page.jpegtables)[0]
                tile = pixels.reshape(tile_height, tile_width, -1)
                top, left = row * tile_height, col * tile_width
                ty0, tx0 = max(y0, top), max(x0, left)
                ty1, tx1 = min(y1, top + tile_height), min(x1, left + tile_width)
                block[ty0 - y0 : ty1 - y0, tx0 - x0 : tx1 - x0] = tile[
                    ty0 - top : ty1 - top, tx0 - left : tx1 - left, :3
                ]
        return block

    def tiled_page(self, level: int):
        """The TIFF page of a tiled level, or None for a level that is not tiled."""
        series = self.handle.ts_tifffile.series[self.handle.properties["tiffslide.series-index"]]
        page = series.levels[level].keyframe
        usable = page.is_tiled and page.planarconfig == 1 and page.imagedepth == 1
        return page if usable and self.descriptor >= 0 else None

    def close(self) -> None:
        self.handle.close()
        if self.descriptor >= 0:
            os.close(self.descriptor)


def open_source(path: Path) -> SourceSlide:
    """Open a source slide, checking that it is whole and holds RGB pixels that can be
    decoded. What tifffile says of a damaged file is kept for the reason, never printed."""
    with _tifffile_complaints() as complaints:
        try:
            handle = tiffslide.TiffSlide(path)
        except OSError as error:  # missing, a folder, not readable
            raise SlideError(f"{path}: cannot be read ({error.strerror or error})") from None
        except Exception as error:  # tifffile and tiffslide raise many kinds for bad files
            _refuse_if_damaged(path, complaints, error)
            raise SlideError(f"{path}: cannot be opened as a slide ({_describe(error)})") from None
        slide = SourceSlide(path, handle, os.open(path, os.O_RDONLY))
        try:
            _refuse_if_damaged(path, complaints)
            if not len(handle.ts_tifffile.pages):
                raise SlideError(
                    f"{path}: holds no image: it is cut short or damaged "
                    f"({path.stat().st_size} bytes)"
                )
            _check_complete(path, handle)
            first = slide.levels[0]
            _refuse_if_damaged(path, complaints)
            if first.ndim != 3 or first.shape[2] not in (3, 4) or first.dtype != np.uint8:
                raise SlideError(
                    f"{path}: unsupported pixels {first.shape} {first.dtype} (8-bit RGB expected)"
                )
            # Decode one tile now, so that damaged pixel data is reported before any writing.
            first[: min(16, first.shape[0]), : min(16, first.shape[1])]
        except SlideError:
            slide.close()
            raise
        except Exception as error:
            slide.close()
            _refuse_if_damaged(path, complaints, error)
            raise SlideError(f"{path}: its pixels cannot be decoded ({_describe(error)})") from None
    return slide


class _Kept(logging.Handler):
    def __init__(self, kept: list[str]):
        super().__init__(logging.WARNING)
        self.kept = kept

    def emit(self, record: logging.LogRecord) -> None:
        self.kept.append(record.getMessage())


@contextlib.contextmanager
def _tifffile_complaints() -> Iterator[list[str]]:
    """What tifffile logs meanwhile (a tag or a page it could not read), kept, not printed."""
    logger = logging.getLogger("tifffile")
    kept: list[str] = []
    handler, propagate = _Kept(kept), logger.propagate
    disabled = logging.root.manager.disable
    logging.disable(logging.NOTSET)
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield kept
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate
        logging.disable(disabled)


def _refuse_if_damaged(path: Path, complaints: list[str], error: Exception | None = None) -> None:
    """A file with a tag or a page that tifffile could not find where the file says it is,
    or whose directory of images breaks off, was cut short (an incomplete copy) or is
    damaged; its levels cannot be trusted."""
    damage = [text for text in complaints if re.search(r"invalid \w+ offset", text)]
    size = path.stat().st_size
    if damage:
        raise SlideError(f"{path}: is cut short or damaged ({size} bytes; {_plain(damage[0])})")
    if error is not None and "corrupted IFD" in str(error):
        raise SlideError(
            f"{path}: is cut short or damaged ({size} bytes; its TIFF directory of images "
            "breaks off)"
        )


def _plain(complaint: str) -> str:
    """tifffile's words for a bad offset, for people: 'its TIFF page at byte 2170 points
    to byte 4258, which is missing or not a page'."""
    found = re.search(r"@(\d+)> invalid (\w+) offset (\d+)", complaint)
    if not found:
        return complaint
    at, kind, offset = found.groups()
    what = "the next page" if kind == "page" else "a tag's value"
    return f"the TIFF entry at byte {at} points to {what} at byte {offset}, which is not there"


def _check_complete(path: Path, handle) -> None:
    """Refuse a file cut short: every level's image data must lie within the file (a cut
    copy otherwise reads as blank or fails deep inside a conversion)."""
    size = path.stat().st_size
    series = handle.ts_tifffile.series[handle.properties["tiffslide.series-index"]]
    for number, level in enumerate(series.levels):
        for page in level.pages:
            ends = [o + c for o, c in zip(page.dataoffsets, page.databytecounts, strict=False) if c]
            if ends and max(ends) > size:
                raise SlideError(
                    f"{path}: is cut short: it ends at byte {size}, but the image data of "
                    f"level {number} runs to byte {max(ends)} (an incomplete copy?)"
                )


def _describe(error: Exception) -> str:
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
