"""`enclave.open_slide`: a whole-slide image read lazily, at physical scale.

The same `Slide` opens a converted OME-Zarr store (by its `dataset-id/object-id` reference)
or a source file directly (by its path), so the two can be compared. Its reading methods keep
OpenSlide's conventions: locations in level-0 pixels as (x, y), sizes as (width, height).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dask.array as da
import numpy as np
import tensorstore
import xarray as xr
import zarr
from PIL import Image

from ..catalog import CatalogError, locate
from ..tensorstores import open_zarr
from .jpeg_tiles import JpegLevel, is_jpeg_level
from .ome import read_levels
from .source import open_source
from .tissue import tissue_mask

LAZY_CHUNK = 2048  # pixels per side of a dask chunk
TISSUE_THUMBNAIL = 1024


def _opaque_image(planes: np.ndarray) -> Image.Image:
    """An opaque RGBA image from (3, h, w) planes, interleaved by PIL (numpy's strided copy
    is several times slower)."""
    _, height, width = planes.shape
    bands = [Image.frombuffer("L", (width, height), plane, "raw", "L", 0, 1) for plane in planes]
    return Image.merge("RGBA", [*bands, Image.new("L", (width, height), 255)])


class StoredLevel:
    """A level of a store read through TensorStore, whose drivers decode the few chunks of a
    region in well under a millisecond; zarr-python's general path costs several (its
    asynchronous machinery, per read)."""

    def __init__(self, path: Path):
        self.store = open_zarr(path)

    def channels_last(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        # TensorStore writes the pixels channels-last itself, faster than numpy would.
        return self.store[tensorstore.d[0].transpose[2]][y0:y1, x0:x1].read().result()

    def image(self, y0: int, y1: int, x0: int, x1: int) -> Image.Image:
        """The region as an opaque RGBA image (PIL interleaves the planes, in C)."""
        return _opaque_image(self.store[:, y0:y1, x0:x1].read().result())


class StorePyramid:
    """The levels of an OME-Zarr store, (c, y, x): regions through `StoredLevel`, or
    `JpegLevel` where a level keeps the source's JPEG tiles; whole levels through zarr and
    dask."""

    def __init__(self, path: Path):
        try:
            group = zarr.open_group(path, mode="r")
            levels, self.unit = read_levels(dict(group.attrs))
            self.arrays = [group[level.path] for level in levels]
        except (FileNotFoundError, KeyError, ValueError) as error:
            raise CatalogError(f"{path}: {error}") from None
        self.scales = [level.scale for level in levels]
        self.readers = [
            JpegLevel(path / level.path)
            if is_jpeg_level(path / level.path)
            else StoredLevel(path / level.path)
            for level in levels
        ]

    @property
    def shapes(self) -> list[tuple[int, int]]:
        return [array.shape[1:] for array in self.arrays]

    def read(self, level: int, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        return self.readers[level].channels_last(y0, y1, x0, x1)

    def image(self, level: int, y0: int, y1: int, x0: int, x1: int) -> Image.Image:
        """The region as an opaque RGBA image."""
        return self.readers[level].image(y0, y1, x0, x1)

    def lazy(self, level: int) -> da.Array:
        return da.from_zarr(self.arrays[level], chunks=(3, LAZY_CHUNK, LAZY_CHUNK))

    def close(self) -> None:
        """Nothing to release: zarr opens files per read."""


class TiffPyramid:
    """The levels of a source slide as tiffslide decodes them, (y, x, c)."""

    def __init__(self, path: Path):
        self.source = open_source(path)
        self.arrays = self.source.levels
        mpp = self.source.mpp
        self.unit = "micrometer" if mpp else None
        base = mpp or (1.0, 1.0)
        self.scales = [(base[0] * d, base[1] * d) for d in self.source.level_downsamples]

    @property
    def shapes(self) -> list[tuple[int, int]]:
        return [array.shape[:2] for array in self.arrays]

    def read(self, level: int, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        return np.asarray(self.arrays[level][y0:y1, x0:x1, :3])

    def image(self, level: int, y0: int, y1: int, x0: int, x1: int) -> Image.Image:
        """The region as an opaque RGBA image."""
        image = Image.fromarray(self.read(level, y0, y1, x0, x1))
        image.putalpha(255)
        return image

    def lazy(self, level: int) -> da.Array:
        array = da.from_zarr(self.arrays[level], chunks=(LAZY_CHUNK, LAZY_CHUNK, -1))
        return array[..., :3].transpose(2, 0, 1)

    def close(self) -> None:
        self.source.close()


@dataclass(frozen=True)
class Tile:
    """One tile of `Slide.tiles`: where it is, and its pixels (height, width, 3)."""

    level: int
    row: int
    col: int
    location: tuple[int, int]  # (x, y) of its top-left corner, level-0 pixels
    position_um: tuple[float, float]  # (x, y) of its top-left corner, micrometres
    pixels: np.ndarray
    tissue: float | None  # the fraction of the tile the tissue mask covers


class Slide:
    """A multiscale RGB slide. Levels are `xarray.DataArray`s (c, y, x) in micrometres."""

    def __init__(self, pyramid: StorePyramid | TiffPyramid, name: str):
        self.pyramid = pyramid
        self.name = name

    # -- what it is ---------------------------------------------------------------------

    @property
    def level_count(self) -> int:
        return len(self.pyramid.shapes)

    @property
    def level_dimensions(self) -> tuple[tuple[int, int], ...]:
        """(width, height) of each level, as OpenSlide gives them."""
        return tuple((w, h) for h, w in self.pyramid.shapes)

    @property
    def dimensions(self) -> tuple[int, int]:
        return self.level_dimensions[0]

    @property
    def level_downsamples(self) -> tuple[float, ...]:
        base = self.pyramid.scales[0][1]
        return tuple(scale[1] / base for scale in self.pyramid.scales)

    @property
    def mpp(self) -> tuple[float, float] | None:
        """Micrometres per pixel at level 0, (y, x); None when the source did not say."""
        return self.pyramid.scales[0] if self.pyramid.unit else None

    @property
    def levels(self) -> list[xr.DataArray]:
        """Every level, dask-backed, with y and x coordinates of pixel corners."""
        unit = self.pyramid.unit or "pixel"
        arrays = []
        for level, (sy, sx) in enumerate(self.pyramid.scales):
            data = self.pyramid.lazy(level)
            _, height, width = data.shape
            arrays.append(
                xr.DataArray(
                    data,
                    dims=("c", "y", "x"),
                    coords={
                        "c": ["R", "G", "B"],
                        "y": ("y", np.arange(height) * sy, {"units": unit}),
                        "x": ("x", np.arange(width) * sx, {"units": unit}),
                    },
                    name=f"{self.name} level {level}",
                )
            )
        return arrays

    def __repr__(self) -> str:
        width, height = self.dimensions
        mpp = f", {self.mpp[1]:.4g} µm/px" if self.mpp else ""
        return f"<Slide {self.name}: {width}x{height} px, {self.level_count} levels{mpp}>"

    # -- reading --------------------------------------------------------------------------

    def read_region(
        self, location: tuple[int, int], level: int, size: tuple[int, int], *, as_array=False
    ) -> Image.Image | np.ndarray:
        """The region of `size` (width, height) at `level` whose top-left corner is `location`
        (x, y) in level-0 pixels: an RGBA image, transparent outside the slide (OpenSlide's
        semantics), or with `as_array` an RGB array (height, width, 3), black outside."""
        if not 0 <= level < self.level_count:
            raise ValueError(f"level {level} does not exist: {self.name} has {self.level_count}")
        width, height = map(int, size)
        if width < 0 or height < 0:
            raise ValueError(f"size {size} is negative")
        downsample = self.level_downsamples[level]
        left, top = int(location[0] / downsample), int(location[1] / downsample)
        level_height, level_width = self.pyramid.shapes[level]
        x0, y0 = max(left, 0), max(top, 0)
        x1, y1 = min(left + width, level_width), min(top + height, level_height)
        inside = x1 > x0 and y1 > y0
        if inside and (x0, y0, x1, y1) == (left, top, left + width, top + height):
            read = self.pyramid.read if as_array else self.pyramid.image
            return read(level, y0, y1, x0, x1)
        region = np.zeros((height, width, 4), np.uint8)
        if inside:
            window = region[y0 - top : y1 - top, x0 - left : x1 - left]
            window[..., :3] = self.pyramid.read(level, y0, y1, x0, x1)
            window[..., 3] = 255
        return np.ascontiguousarray(region[..., :3]) if as_array else Image.fromarray(region)

    def thumbnail(self, max_size: tuple[int, int] = (512, 512)) -> Image.Image:
        """The whole slide, fitting in `max_size` (width, height), aspect kept."""
        width, height = self.dimensions
        wanted = max(width / max_size[0], height / max_size[1])
        level = max(i for i, d in enumerate(self.level_downsamples) if d <= max(wanted, 1.0))
        level_height, level_width = self.pyramid.shapes[level]
        image = Image.fromarray(self.pyramid.read(level, 0, level_height, 0, level_width))
        image.thumbnail(max_size, Image.Resampling.LANCZOS)
        return image

    def tissue_mask(self, max_size: int = TISSUE_THUMBNAIL) -> np.ndarray:
        """True where there is tissue, on a thumbnail of at most `max_size` pixels a side."""
        return tissue_mask(np.asarray(self.thumbnail((max_size, max_size))))

    def tiles(
        self,
        size: int,
        level: int = 0,
        overlap: int = 0,
        tissue_only: bool = True,
        min_tissue: float = 0.5,
    ) -> Iterator[Tile]:
        """Square tiles of `size` pixels at `level`, row by row, `overlap` pixels shared with
        each neighbour; only whole tiles. With `tissue_only`, only tiles at least `min_tissue`
        covered by the tissue mask."""
        sy, sx = self.pyramid.scales[0]
        places = self.tile_places(size, level, overlap, tissue_only, min_tissue)
        for row, col, top, left, covered in places:
            downsample = self.level_downsamples[level]
            x, y = round(left * downsample), round(top * downsample)
            yield Tile(
                level=level,
                row=row,
                col=col,
                location=(x, y),
                position_um=(x * sx, y * sy),
                pixels=self.pyramid.read(level, top, top + size, left, left + size),
                tissue=covered,
            )

    def tile_places(
        self, size: int, level: int, overlap: int, tissue_only: bool, min_tissue: float
    ) -> Iterator[tuple[int, int, int, int, float | None]]:
        """Where `tiles` finds its tiles, nothing read: (row, col, top, left, tissue), top and
        left in pixels of `level`."""
        if size <= 0 or not 0 <= overlap < size:
            raise ValueError(f"size {size} with overlap {overlap}: need 0 <= overlap < size")
        if not 0 <= level < self.level_count:
            raise ValueError(f"level {level} does not exist: {self.name} has {self.level_count}")
        stride = size - overlap
        height, width = self.pyramid.shapes[level]
        downsample = self.level_downsamples[level]
        mask = self.tissue_mask() if tissue_only else None
        for row, top in enumerate(range(0, height - size + 1, stride)):
            for col, left in enumerate(range(0, width - size + 1, stride)):
                covered = None
                if mask is not None:
                    covered = _coverage(mask, self.dimensions, downsample, left, top, size)
                    if covered < min_tissue:
                        continue
                yield row, col, top, left, covered

    def to_napari(self) -> tuple[list, dict, str]:
        """A napari layer data tuple: one RGB multiscale image layer at physical scale."""
        data = [level.data.transpose(1, 2, 0) for level in self.levels]
        sy, sx = self.pyramid.scales[0]
        unit = self.pyramid.unit or "pixel"
        return (
            data,
            {
                "name": self.name,
                "rgb": True,
                "multiscale": True,
                "scale": (sy, sx),
                "units": (unit, unit),
                "axis_labels": ("y", "x"),
            },
            "image",
        )

    def close(self) -> None:
        self.pyramid.close()

    def __enter__(self) -> Slide:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _coverage(mask, dimensions, downsample, left, top, size) -> float:
    """The fraction of a tile (in level pixels) that the thumbnail-sized mask marks."""
    mask_height, mask_width = mask.shape
    fy, fx = mask_height / dimensions[1], mask_width / dimensions[0]
    y0, x0 = int(top * downsample * fy), int(left * downsample * fx)
    y1 = max(y0 + 1, int(np.ceil((top + size) * downsample * fy)))
    x1 = max(x0 + 1, int(np.ceil((left + size) * downsample * fx)))
    return float(mask[y0:y1, x0:x1].mean())


def open_slide(reference: str | os.PathLike, root: Path | None = None) -> Slide:
    """A slide by its `dataset-id/object-id` reference, or a source file or store by path."""
    path, name = locate(reference, "slide", root)
    return Slide(StorePyramid(path) if path.is_dir() else TiffPyramid(path), name)
