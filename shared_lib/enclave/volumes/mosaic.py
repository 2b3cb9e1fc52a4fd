"""Siemens mosaics: the slices of one volume tiled, row by row, in one image (as diffusion and
functional MRI store them), found and placed from the CSA image header Siemens writes beside
them.

ImagePositionPatient of a mosaic is the corner of the whole tiled image; the first tile's
corner lies half the difference between the mosaic's size and a tile's inward along the rows
and columns. Tiles follow each other along the CSA header's slice normal (the row and column
directions' cross product where it gives none), SpacingBetweenSlices apart.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from math import ceil, sqrt

import numpy as np
from pydicom.dataset import Dataset

from .values import as_float, as_int

with warnings.catch_warnings():  # nibabel.nicom warns, on import, of its other readers
    warnings.simplefilter("ignore", UserWarning)
    from nibabel.nicom import csareader


@dataclass(frozen=True)
class Tile:
    """One slice of a mosaic: where it is in the image, and where in the patient."""

    region: tuple[int, int, int, int]  # top, left, rows, columns in the mosaic image
    position: tuple[float, float, float]  # of its first pixel, in the patient's LPS frame


def mosaic_tiles(
    header: Dataset,
    orientation: tuple[float, ...] | None,
    pixel_spacing: tuple[float, float] | None,
    position: tuple[float, float, float] | None,
) -> list[Tile] | None:
    """The tiles of a mosaic in slice order, or None when its header does not say enough to
    place them (no CSA image header giving their number, no orientation, position, pixel
    spacing or spacing between slices)."""
    try:
        csa = csareader.get_csa_header(header, "image")
    except (csareader.CSAReadError, ValueError, TypeError):
        return None
    count = as_int(csareader.get_n_mosaic(csa)) if csa else None
    between = as_float(header.get("SpacingBetweenSlices"))
    if not count or None in (orientation, pixel_spacing, position, between):
        return None
    per_side = ceil(sqrt(count))
    rows, columns = int(header.Rows) // per_side, int(header.Columns) // per_side
    row_direction, column_direction = np.array(orientation[:3]), np.array(orientation[3:])
    try:
        normal = csareader.get_slice_normal(csa)
    except ValueError:
        normal = None
    normal = np.cross(row_direction, column_direction) if normal is None else np.array(normal)
    normal = normal / np.linalg.norm(normal)
    first = (
        np.array(position)
        + row_direction * pixel_spacing[1] * (int(header.Columns) - columns) / 2
        + column_direction * pixel_spacing[0] * (int(header.Rows) - rows) / 2
    )
    return [
        Tile(
            region=(index // per_side * rows, index % per_side * columns, rows, columns),
            position=tuple(float(v) for v in first + index * between * normal),
        )
        for index in range(count)
    ]
