"""Converting a source slide into an OME-Zarr store, streaming shard by shard.

Where every source level is made of JPEG tiles that can be kept as they are, the tiles are
copied byte for byte into an OME-Zarr 0.4 store (`jpeg_tiles`): no decoding, no re-encoding,
the store as large as the source. Otherwise every source level is copied pixel for pixel,
losslessly compressed, into an OME-Zarr 0.5 store. Either way, levels halving the last one
(2x2 mean, lossless) follow down to thumbnail size. Work goes shard by shard, a few at a time,
so memory stays bounded by the shard size whatever the slide's size; shards are written whole,
in parallel threads (JPEG decoding and compression release the GIL). Arrays are written with
TensorStore, which encodes a shard about three times faster than zarr-python; the group and
its OME metadata are written with zarr-python.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorstore
import zarr
from zarr.codecs import BloscCodec

from .jpeg_tiles import JpegLevel, JpegTiling, TileCache, copy_level, copyable
from .ome import NGFF_VERSION, TILE_COPY_VERSION, Level, image_attributes
from .source import SourceSlide

CHUNK = 256  # pixels: what one random read decodes at least
SHARD = 4096  # pixels: one file per shard, so a slide is a few files
THUMBNAIL = 512  # levels are added until the smallest fits in this
UNIT = "micrometer"

Progress = Callable[[int], object]  # called with the number of pixels just written
ReadPlanes = Callable[[int, int, int, int], np.ndarray]  # (y0, y1, x0, x1) → (3, h, w)


def codec() -> BloscCodec:
    """Lossless LZ4 through Blosc (RGB planes are separate: no shuffle). Zstandard saves about
    an eighth of the space but makes random region reads three times slower."""
    return BloscCodec(cname="lz4", clevel=5, shuffle="noshuffle")


@dataclass(frozen=True)
class Region:
    y0: int
    y1: int
    x0: int
    x1: int

    @property
    def pixels(self) -> int:
        return (self.y1 - self.y0) * (self.x1 - self.x0)


def shard_regions(height: int, width: int, shard: int = SHARD) -> Iterator[Region]:
    for y0, x0 in itertools.product(range(0, height, shard), range(0, width, shard)):
        yield Region(y0, min(y0 + shard, height), x0, min(x0 + shard, width))


def halve(block: np.ndarray) -> np.ndarray:
    """(c, h, w) uint8 → (c, ⌈h/2⌉, ⌈w/2⌉) by the rounded mean of each 2x2 (edges repeated)."""
    _, height, width = block.shape
    if height % 2 or width % 2:
        block = np.pad(block, ((0, 0), (0, height % 2), (0, width % 2)), mode="edge")
    wide = block.astype(np.uint16)
    total = wide[:, 0::2, 0::2] + wide[:, 1::2, 0::2] + wide[:, 0::2, 1::2] + wide[:, 1::2, 1::2]
    return ((total + 2) // 4).astype(np.uint8)


def generated_shapes(height: int, width: int, thumbnail: int = THUMBNAIL) -> list[tuple[int, int]]:
    """Shapes of the levels that halve (height, width) until both fit in `thumbnail`."""
    shapes = []
    while max(height, width) > thumbnail:
        height, width = math.ceil(height / 2), math.ceil(width / 2)
        shapes.append((height, width))
    return shapes


class SlideConverter:
    """Writes one source slide into a new store folder."""

    def __init__(self, source: SourceSlide, target: Path, workers: int = 2):
        self.source = source
        self.target = target
        self.workers = max(1, workers)
        self.tilings = self._jpeg_tilings()
        self.version = TILE_COPY_VERSION if self.tilings else NGFF_VERSION

    @property
    def format(self) -> str:
        """What the store is, as dataset.json says it."""
        return f"ome-zarr-{self.version}"

    def total_pixels(self) -> int:
        shapes = [level.shape[:2] for level in self.source.levels]
        shapes += generated_shapes(*shapes[-1])
        return sum(h * w for h, w in shapes)

    def run(self, name: str, progress: Progress = lambda _: None) -> dict:
        """Write the store; what dataset.json should say about its pixels."""
        tilings, version = self.tilings, self.version
        root = zarr.open_group(self.target, mode="w", zarr_format=2 if tilings else 3)
        mpp = self.source.mpp
        base = mpp or (1.0, 1.0)
        levels: list[Level] = []
        shapes = []
        for index, (array, downsample) in enumerate(
            zip(self.source.levels, self.source.level_downsamples, strict=True)
        ):
            if tilings:
                folder = self.target / str(index)
                page = self.source.tiled_page(index)
                copy_level(page, self.source.descriptor, tilings[index], folder, progress)
                read = JpegLevel(folder, TileCache(limit=0)).planes
            else:
                target = self._create(str(index), array.shape[:2])
                self._copy(index, target, progress)
                read = _planes_of(target)
            levels.append(Level(str(index), (base[0] * downsample, base[1] * downsample)))
            shapes.append(array.shape[:2])
        source_levels = len(levels)
        for height, width in generated_shapes(*shapes[-1]):
            index = len(levels)
            target = self._create(str(index), (height, width), zarr_format=2 if tilings else 3)
            self._halve_into(read, shapes[-1], target, progress)
            read = _planes_of(target)
            previous = levels[-1].scale
            levels.append(Level(str(index), (previous[0] * 2, previous[1] * 2)))
            shapes.append((height, width))
        # Written last: a store without these attributes is not a slide.
        generated = "2x2 mean of the previous"
        root.attrs.update(
            image_attributes(
                name,
                levels,
                UNIT if mpp else None,
                {"source_levels": source_levels, "generated_levels": generated},
                version,
            )
        )
        return {
            "levels": [list(shape) for shape in shapes],
            "source_levels": source_levels,
            "mpp": list(mpp) if mpp else None,
            "codec": (
                "the source's JPEG tiles, copied; generated levels blosc-lz4 (lossless)"
                if tilings
                else "blosc-lz4 (lossless)"
            ),
            "chunk": [tilings[0].height, tilings[0].width] if tilings else CHUNK,
            "shard": None if tilings else SHARD,
        }

    def _jpeg_tilings(self) -> list[JpegTiling] | None:
        """Each source level's JPEG tiling, when every level's tiles can be kept as they are."""
        tilings = []
        for level in range(len(self.source.levels)):
            page = self.source.tiled_page(level)
            tiling = None if page is None else copyable(page, self.source.descriptor)
            if tiling is None:
                return None
            tilings.append(tiling)
        return tilings

    def _create(
        self, path: str, shape: tuple[int, int], zarr_format: int = 3
    ) -> tensorstore.TensorStore:
        """A new level: zarr v3, sharded; or zarr v2 beside copied tiles (no shards in v2)."""
        driver, metadata = (
            ("zarr", _v2_metadata(shape)) if zarr_format == 2 else ("zarr3", _v3_metadata(shape))
        )
        spec = {
            "driver": driver,
            "kvstore": {"driver": "file", "path": str(self.target / path)},
            "metadata": metadata,
            "create": True,
        }
        return tensorstore.open(spec).result()

    def _copy(self, level: int, target: tensorstore.TensorStore, progress: Progress) -> None:
        channels_last = target[tensorstore.d[0].transpose[2]]

        def copy(region: Region) -> int:
            pixels = self.source.read_block(level, region.y0, region.y1, region.x0, region.x1)
            channels_last[region.y0 : region.y1, region.x0 : region.x1].write(pixels).result()
            return region.pixels

        self._each_shard(target, copy, progress)

    def _halve_into(
        self,
        read_larger: ReadPlanes,
        larger_shape: tuple[int, int],
        target: tensorstore.TensorStore,
        progress: Progress,
    ) -> None:
        half = SHARD // 2
        larger_height, larger_width = larger_shape

        def build(region: Region) -> int:
            block = np.empty((3, region.y1 - region.y0, region.x1 - region.x0), np.uint8)
            # The shard is filled a quarter at a time: each quarter reads one shard of the
            # larger level.
            for part in shard_regions(region.y1 - region.y0, region.x1 - region.x0, half):
                y0, x0 = 2 * (region.y0 + part.y0), 2 * (region.x0 + part.x0)
                y1 = min(2 * (region.y0 + part.y1), larger_height)
                x1 = min(2 * (region.x0 + part.x1), larger_width)
                block[:, part.y0 : part.y1, part.x0 : part.x1] = halve(read_larger(y0, y1, x0, x1))
            target[:, region.y0 : region.y1, region.x0 : region.x1].write(block).result()
            return region.pixels

        self._each_shard(target, build, progress)

    def _each_shard(self, target, work: Callable[[Region], int], progress) -> None:
        """Run `work` on every shard of `target`, at most `workers` at a time."""
        regions = shard_regions(target.shape[1], target.shape[2])
        with ThreadPoolExecutor(self.workers) as pool:
            running: set[Future] = set()
            for region in regions:
                if len(running) >= self.workers:
                    done, running = wait(running, return_when=FIRST_COMPLETED)
                    for future in done:
                        progress(future.result())
                running.add(pool.submit(work, region))
            for future in running:
                progress(future.result())


def _v2_metadata(shape: tuple[int, int]) -> dict:
    """A generated level beside copied tiles: 256² chunks, Blosc LZ4, one file each."""
    height, width = shape
    blosc = codec()
    return {
        "shape": [3, height, width],
        "chunks": [3, min(CHUNK, height), min(CHUNK, width)],
        "dtype": "|u1",
        "fill_value": 0,
        "order": "C",
        "filters": None,
        "compressor": {"id": "blosc", "cname": blosc.cname.value, "clevel": blosc.clevel,
                       "shuffle": 0, "blocksize": 0},
        "dimension_separator": "/",
    }  # fmt: skip


def _v3_metadata(shape: tuple[int, int]) -> dict:
    """A level of a lossless store: shards of 4096² pixels holding 256² chunks."""
    height, width = shape
    chunk = [3, min(CHUNK, height), min(CHUNK, width)]
    shard = [3, _multiple(min(SHARD, height), chunk[1]), _multiple(min(SHARD, width), chunk[2])]
    return {
        "shape": [3, height, width],
        "data_type": "uint8",
        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": shard}},
        "fill_value": 0,
        "dimension_names": ["c", "y", "x"],
        "codecs": [
            {
                "name": "sharding_indexed",
                "configuration": {
                    "chunk_shape": chunk,
                    "codecs": [{"name": "bytes"}, codec().to_dict()],
                    "index_codecs": [
                        {"name": "bytes", "configuration": {"endian": "little"}},
                        {"name": "crc32c"},
                    ],
                    "index_location": "end",
                },
            }
        ],
    }


def _planes_of(level: tensorstore.TensorStore) -> ReadPlanes:
    return lambda y0, y1, x0, x1: level[:, y0:y1, x0:x1].read().result()


def _multiple(value: int, of: int) -> int:
    return math.ceil(value / of) * of
