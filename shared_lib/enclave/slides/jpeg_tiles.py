"""Slide levels kept as the source's own JPEG tiles, copied byte for byte.

A level is a zarr v2 array (c, y, x) whose chunks are the source's tiles, as they are in the
file. imagecodecs' JPEG codec (with the file's shared tables and colour spaces in its
configuration) decodes a chunk to (y, x, c), and numcodecs' Shuffle, with the tile's pixel
count as its element size, turns that into planes: zarr-python, ome-zarr-py and
napari-ome-zarr read the level as any other where numcodecs knows the codec: Enclave's package
names it for numcodecs (an entry point), and elsewhere `imagecodecs.numcodecs.register_codecs()`
does. Its pixels are those the source's decoder gives.

Enclave reads regions itself (`JpegLevel`): the tiles a region needs are read and decoded by
libjpeg-turbo in parallel threads, and kept decoded in a cache shared by every level.
"""

from __future__ import annotations

import base64
import json
import math
import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import imagecodecs
import imagecodecs.numcodecs
import numpy as np
import tifffile
import zarr
from numcodecs import Shuffle
from PIL import Image
from tifffile.tifffile import jpeg_decode_colorspace

JPEG = 7  # TIFF's compression tag: JPEG ("new-style", with shared tables)
RGB_COMPONENTS = 2  # a tiling's colorspace where the JPEG's components are RGB, not YCbCr
# An Adobe APP14 marker (length 14, version 100, no flags) whose transform 0 says that the
# components are RGB: how a JPEG says so to any decoder, libjpeg-turbo's and nvJPEG's alike.
ADOBE_RGB = b"\xff\xee\x00\x0eAdobe\x00\x64\x00\x00\x00\x00\x00"
CACHE_BYTES = 256 * 1024**2  # decoded tiles kept, for every level together
DECODERS = ThreadPoolExecutor(max(2, os.cpu_count() or 2), thread_name_prefix="jpeg-tiles")


@dataclass(frozen=True)
class JpegTiling:
    """How a level's tiles are decoded: their size, the shared tables, the colour spaces."""

    height: int
    width: int
    tables: bytes | None
    colorspace: int | str | None
    outcolorspace: int | str | None

    def decode(self, data: bytes) -> np.ndarray:
        """One tile's pixels, (height, width, 3)."""
        return imagecodecs.jpeg8_decode(
            data, tables=self.tables, colorspace=self.colorspace, outcolorspace=self.outcolorspace
        )

    def whole(self, data: bytes) -> bytes:
        """The tile as a JPEG that any decoder reads alone (nvJPEG's among them): the shared
        tables put in after its start, and where its components are RGB, a marker saying so."""
        if data[:2] != b"\xff\xd8":
            raise ValueError("a JPEG tile must start with its start-of-image marker")
        head = ADOBE_RGB if self.colorspace == RGB_COMPONENTS else b""
        tables = self.tables[2:-2] if self.tables else b""  # without their own start and end
        return data[:2] + head + tables + data[2:]

    def codec(self) -> imagecodecs.numcodecs.Jpeg:
        return imagecodecs.numcodecs.Jpeg(
            tables=self.tables, colorspace_jpeg=self.colorspace, colorspace_data=self.outcolorspace
        )

    @classmethod
    def of_array(cls, meta: dict) -> JpegTiling:
        """The tiling that an array's `.zarray` metadata describes."""
        config = meta["compressor"]
        tables = config.get("tables")
        return cls(
            *meta["chunks"][1:],
            base64.b64decode(tables) if tables else None,
            config.get("colorspace_jpeg"),
            config.get("colorspace_data"),
        )


def copyable(page: tifffile.TiffPage, descriptor: int) -> JpegTiling | None:
    """The tiling of a source level whose tiles can be kept as they are: 8-bit RGB JPEG tiles
    that imagecodecs decodes exactly as tifffile does (its first tile is tried). None for any
    other level, which is converted losslessly instead."""
    if not (
        page.is_tiled
        and page.compression == JPEG
        and page.planarconfig == 1
        and page.samplesperpixel == 3
        and not page.extrasamples
        and page.bitspersample == 8
        and page.imagedepth == 1
        and page.photometric in (2, 6)  # RGB, YCbCr
        and getattr(page, "jpegheader", None) is None  # NDPI's tiles are not whole JPEGs
    ):
        return None
    colorspace, outcolorspace = jpeg_decode_colorspace(  # as tifffile decodes the level
        page.photometric, page.planarconfig, page.extrasamples, page.is_jfif
    )
    tiling = JpegTiling(page.tilelength, page.tilewidth, page.jpegtables, colorspace, outcolorspace)
    first = next((i for i, count in enumerate(page.databytecounts) if count), None)
    if first is None:
        return tiling
    data = os.pread(descriptor, page.databytecounts[first], page.dataoffsets[first])
    try:
        ours = tiling.decode(data)
    except imagecodecs.JpegError:  # libjpeg-turbo cannot read it as it is
        return None
    theirs = page.decode(data, first, jpegtables=page.jpegtables)[0]
    expected = theirs.reshape(page.tilelength, page.tilewidth, -1)
    same = ours.shape == expected.shape and np.array_equal(ours, expected)
    return tiling if same else None


def copy_level(
    page: tifffile.TiffPage,
    descriptor: int,
    tiling: JpegTiling,
    folder: Path,
    progress: Callable[[int], object],
) -> None:
    """Write the level's array into `folder`: its metadata, then each tile as a chunk."""
    height, width = page.imagelength, page.imagewidth
    zarr.create_array(
        store=folder,
        shape=(3, height, width),
        chunks=(3, tiling.height, tiling.width),
        dtype="uint8",
        zarr_format=2,
        filters=[Shuffle(elementsize=tiling.height * tiling.width)],
        compressors=tiling.codec(),
        chunk_key_encoding={"name": "v2", "separator": "/"},
        fill_value=0,
        overwrite=True,
    )
    across = math.ceil(width / tiling.width)
    made: set[int] = set()
    for index, (offset, count) in enumerate(
        zip(page.dataoffsets, page.databytecounts, strict=True)
    ):
        row, col = divmod(index, across)
        if count:  # an empty tile stays the fill value, as in the source
            if row not in made:
                (folder / "0" / str(row)).mkdir(parents=True, exist_ok=True)
                made.add(row)
            (folder / "0" / str(row) / str(col)).write_bytes(os.pread(descriptor, count, offset))
        tile_rows = min(tiling.height, height - row * tiling.height)
        progress(tile_rows * min(tiling.width, width - col * tiling.width))


def is_jpeg_level(folder: Path) -> bool:
    """Whether the array in `folder` holds copied JPEG tiles."""
    try:
        meta = json.loads((folder / ".zarray").read_text())
    except (OSError, ValueError):
        return False
    return (meta.get("compressor") or {}).get("id") == "imagecodecs_jpeg"


class TileCache:
    """Decoded tiles, the least recently used dropped past a size in bytes."""

    def __init__(self, limit: int = CACHE_BYTES):
        self.limit = limit
        self._tiles: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: tuple) -> np.ndarray | None:
        with self._lock:
            tile = self._tiles.get(key)
            if tile is not None:
                self._tiles.move_to_end(key)
            return tile

    def put(self, key: tuple, tile: np.ndarray) -> None:
        with self._lock:
            if key in self._tiles:
                return
            self._tiles[key] = tile
            self._bytes += tile.nbytes
            while self._bytes > self.limit and self._tiles:
                _, dropped = self._tiles.popitem(last=False)
                self._bytes -= dropped.nbytes


SHARED_CACHE = TileCache()


class JpegLevel:
    """Regions of a level of copied JPEG tiles."""

    def __init__(self, folder: Path, cache: TileCache = SHARED_CACHE):
        meta = json.loads((folder / ".zarray").read_text())
        self.folder = folder
        self.tiling = JpegTiling.of_array(meta)
        self.height, self.width = meta["shape"][1:]
        self.cache = cache

    def channels_last(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        """Pixels (y1 - y0, x1 - x0, 3) of the region."""
        tile_height, tile_width = self.tiling.height, self.tiling.width
        rows = range(y0 // tile_height, math.ceil(y1 / tile_height))
        cols = range(x0 // tile_width, math.ceil(x1 / tile_width))
        wanted = [(row, col) for row in rows for col in cols]
        tiles = {place: self.cache.get((self.folder, *place)) for place in wanted}
        missing = [place for place, tile in tiles.items() if tile is None]
        decode = DECODERS.map if len(missing) > 1 else map
        decoded = decode(self._tile, missing)
        tiles.update(zip(missing, decoded, strict=True))
        block = np.zeros((y1 - y0, x1 - x0, 3), np.uint8)
        for (row, col), tile in tiles.items():
            if tile is None:
                continue  # an empty tile of the source
            top, left = row * tile_height, col * tile_width
            ty0, tx0 = max(y0, top), max(x0, left)
            ty1, tx1 = min(y1, top + tile_height), min(x1, left + tile_width)
            block[ty0 - y0 : ty1 - y0, tx0 - x0 : tx1 - x0] = tile[
                ty0 - top : ty1 - top, tx0 - left : tx1 - left
            ]
        return block

    def planes(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        """Pixels (3, y1 - y0, x1 - x0) of the region."""
        return np.ascontiguousarray(np.moveaxis(self.channels_last(y0, y1, x0, x1), 2, 0))

    def image(self, y0: int, y1: int, x0: int, x1: int) -> Image.Image:
        """The region as an opaque RGBA image."""
        image = Image.fromarray(self.channels_last(y0, y1, x0, x1))
        image.putalpha(255)
        return image

    def whole_tile(self, row: int, col: int) -> bytes | None:
        """The stored tile at (row, col) as a JPEG that any decoder reads alone; None where
        the source has no tile."""
        data = self._stored(row, col)
        if data is None:
            return None
        try:
            return self.tiling.whole(data)
        except ValueError as error:
            raise ValueError(f"{self._chunk(row, col)}: {error}") from None

    def _chunk(self, row: int, col: int) -> Path:
        return self.folder / "0" / str(row) / str(col)

    def _stored(self, row: int, col: int) -> bytes | None:
        try:
            return self._chunk(row, col).read_bytes()
        except FileNotFoundError:
            return None

    def _tile(self, place: tuple[int, int]) -> np.ndarray | None:
        row, col = place
        data = self._stored(row, col)
        if data is None:
            return None
        tile = self.tiling.decode(data)
        self.cache.put((self.folder, row, col), tile)
        return tile
