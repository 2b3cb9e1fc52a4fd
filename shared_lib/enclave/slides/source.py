"""Source slides as tiffslide opens them (Aperio SVS, generic tiled TIFF and the rest), with
what may be kept of their metadata.

Only the geometry and optics of a slide are kept: vendor, objective power, microns per pixel
and the levels. Everything else a vendor writes (file names, dates, users, barcodes, the label
and macro images) may identify a patient and is dropped; its names are recorded, never its
values.
"""

from __future__ import annotations

from dataclasses import dataclass
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

    def close(self) -> None:
        self.handle.close()


def open_source(path: Path) -> SourceSlide:
    """Open a source slide, checking that it holds RGB pixels that can be decoded."""
    try:
        handle = tiffslide.TiffSlide(path)
    except Exception as error:  # tifffile and tiffslide raise many kinds for bad files
        raise SlideError(f"{path}: cannot be opened as a slide ({_describe(error)})") from None
    slide = SourceSlide(path, handle)
    try:
        first = slide.levels[0]
        if first.ndim != 3 or first.shape[2] not in (3, 4) or first.dtype != np.uint8:
            raise SlideError(
                f"{path}: unsupported pixels {first.shape} {first.dtype} (8-bit RGB expected)"
            )
        # Decode one tile now, so that damaged pixel data is reported before any writing.
        first[: min(16, first.shape[0]), : min(16, first.shape[1])]
    except SlideError:
        handle.close()
        raise
    except Exception as error:
        handle.close()
        raise SlideError(f"{path}: its pixels cannot be decoded ({_describe(error)})") from None
    return slide


def _describe(error: Exception) -> str:
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
