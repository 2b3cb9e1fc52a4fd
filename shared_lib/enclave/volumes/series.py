"""DICOM series: instances found in a folder, grouped, ordered along the slice normal and
checked before any volume is built.

Spacing comes from the positions of the slices, never from SliceThickness. A series with too
few slices, two slices at one place, a missing slice, uneven spacing, a tilted gantry or an
orientation that changes is refused with a message naming the series and the problem: it is
never resampled.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError
from pydicom.pixels import pixel_array

from .deid import has_burned_in_annotation

MIN_SLICES = 3
SPACING_TOLERANCE = 0.01  # relative difference between slice gaps that counts as uneven
DIRECTION_TOLERANCE = 1e-3


class SeriesError(ValueError):
    """A series that cannot become a volume; the message names it and says why."""


@dataclass(frozen=True)
class Instance:
    """What grouping and geometry need from one DICOM file's header."""

    path: Path
    series_uid: str
    series_number: int | None
    description: str
    modality: str
    image_type: tuple[str, ...]
    orientation: tuple[float, ...] | None  # row then column direction cosines
    position: tuple[float, float, float] | None
    pixel_spacing: tuple[float, float] | None  # (between rows, between columns)
    rows: int
    columns: int
    frames: int
    gantry_tilt: float
    rescale: tuple[float, float]  # slope, intercept
    stored_range: tuple[int, int]  # the smallest and largest value its pixels can hold
    burned_in: str | None  # why its pixels may show identifying text, if they may

    @classmethod
    def read(cls, path: Path) -> Instance:
        header = pydicom.dcmread(path, stop_before_pixels=True)
        if "PixelData" not in header and "Rows" not in header:
            raise InvalidDicomError(f"{path} holds no image")
        return cls(
            path=path,
            series_uid=str(header.get("SeriesInstanceUID", "")),
            series_number=_int(header.get("SeriesNumber")),
            description=str(header.get("SeriesDescription", "")),
            modality=str(header.get("Modality", "")),
            image_type=tuple(str(v) for v in header.get("ImageType", ())),
            orientation=_floats(header.get("ImageOrientationPatient"), 6),
            position=_floats(header.get("ImagePositionPatient"), 3),
            pixel_spacing=_floats(header.get("PixelSpacing"), 2),
            rows=int(header.get("Rows", 0)),
            columns=int(header.get("Columns", 0)),
            frames=int(header.get("NumberOfFrames", 1) or 1),
            gantry_tilt=float(header.get("GantryDetectorTilt", 0) or 0),
            rescale=(
                float(header.get("RescaleSlope", 1) or 1),
                float(header.get("RescaleIntercept", 0) or 0),
            ),
            stored_range=_stored_range(header),
            burned_in=has_burned_in_annotation(header),
        )


def _stored_range(header) -> tuple[int, int]:
    bits = int(header.get("BitsStored", 16) or 16)
    if int(header.get("PixelRepresentation", 0) or 0):
        return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    return 0, 2**bits - 1


def _int(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _floats(value, count: int) -> tuple[float, ...] | None:
    if value is None:
        return None
    try:
        numbers = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        return None
    return numbers if len(numbers) == count else None


@dataclass(frozen=True)
class Series:
    """Instances of one series that share type, orientation and size, in file order."""

    uid: str
    number: int | None
    description: str
    modality: str
    instances: tuple[Instance, ...]
    orientation_changes: bool = False  # the same SeriesInstanceUID holds other orientations

    @property
    def name(self) -> str:
        label = f"series {self.number}" if self.number is not None else "series"
        about = f" '{self.description}'" if self.description else ""
        return f"{label}{about} ({self.modality}, {self.uid})"


def find_instances(folder: Path) -> tuple[list[Instance], list[Path]]:
    """Every DICOM image under `folder` (DICOMDIR files skipped), and the files that are not."""
    found, skipped = [], []
    for directory, _, names in os.walk(folder):
        for name in sorted(names):
            path = Path(directory, name)
            if name.upper() == "DICOMDIR":
                continue
            try:
                found.append(Instance.read(path))
            except (InvalidDicomError, OSError, ValueError, AttributeError):
                skipped.append(path)
    return found, skipped


def group_series(instances: Iterable[Instance]) -> list[Series]:
    """Instances grouped by SeriesInstanceUID, split further on image type and size. A group
    whose slices do not all share one orientation stays one series, flagged: it is reported
    once, as such, rather than as many one-slice stacks."""
    by_key: dict[tuple, list[Instance]] = defaultdict(list)
    for instance in instances:
        key = (instance.series_uid, instance.image_type, instance.rows, instance.columns)
        by_key[key].append(instance)
    series = []
    for members in by_key.values():
        first = members[0]
        orientations = {
            tuple(round(v, 4) for v in i.orientation) if i.orientation else None for i in members
        }
        series.append(
            Series(
                uid=first.series_uid,
                number=first.series_number,
                description=first.description,
                modality=first.modality,
                instances=tuple(sorted(members, key=lambda i: str(i.path))),
                orientation_changes=len(orientations) > 1,
            )
        )
    return sorted(series, key=lambda s: (s.number is None, s.number or 0, s.uid, s.name))


@dataclass(frozen=True)
class Geometry:
    """Where a volume's voxels are, in the patient's LPS frame (millimetres).

    `directions` holds the unit vectors of the x (along a row), y (down a column) and z
    (slice) index axes as its columns; `spacing` is (z, y, x).
    """

    origin: tuple[float, float, float]
    directions: np.ndarray
    spacing: tuple[float, float, float]

    def affine(self, convention: str = "LPS") -> np.ndarray:
        """The 4x4 map from (x, y, z) voxel indices to patient millimetres, LPS or RAS."""
        matrix = np.eye(4)
        sz, sy, sx = self.spacing
        matrix[:3, :3] = self.directions * np.array([sx, sy, sz])
        matrix[:3, 3] = self.origin
        if convention == "RAS":
            matrix = np.diag([-1.0, -1.0, 1.0, 1.0]) @ matrix
        elif convention != "LPS":
            raise ValueError(f"convention {convention!r}: use 'LPS' or 'RAS'")
        return matrix


def slice_geometry(series: Series) -> tuple[list[Instance], Geometry]:
    """The instances in order along the slice normal, and the volume's geometry; raises
    SeriesError naming the series when it cannot be a regular volume."""
    instances = list(series.instances)
    name = series.name
    if series.orientation_changes:
        raise SeriesError(f"{name}: the orientation changes within the series")
    if any(i.frames > 1 for i in instances):
        raise SeriesError(f"{name}: multi-frame instances are not read as slices here")
    if len(instances) < MIN_SLICES:
        raise SeriesError(f"{name}: too few slices ({len(instances)}, at least {MIN_SLICES})")
    first = instances[0]
    if first.orientation is None or any(i.position is None for i in instances):
        raise SeriesError(f"{name}: no ImageOrientationPatient or ImagePositionPatient")
    if first.pixel_spacing is None:
        raise SeriesError(f"{name}: no PixelSpacing")
    if any(abs(i.gantry_tilt) > DIRECTION_TOLERANCE for i in instances):
        raise SeriesError(f"{name}: the gantry is tilted ({first.gantry_tilt} degrees)")
    row = np.array(first.orientation[:3])
    column = np.array(first.orientation[3:])
    normal = np.cross(row, column)
    positions = np.array([i.position for i in instances])
    distances = positions @ normal
    order = np.argsort(distances, kind="stable")
    instances = [instances[k] for k in order]
    positions, distances = positions[order], distances[order]
    gaps = np.diff(distances)
    if np.any(gaps < DIRECTION_TOLERANCE):
        raise SeriesError(f"{name}: two slices lie at the same position")
    step = float(np.median(gaps))
    if np.any(np.abs(gaps - step) > SPACING_TOLERANCE * step):
        widest = int(np.argmax(gaps))
        ratio = gaps[widest] / step
        if abs(ratio - round(ratio)) < SPACING_TOLERANCE * ratio and round(ratio) >= 2:
            missing = round(ratio) - 1
            raise SeriesError(
                f"{name}: {missing} slice(s) missing between {distances[widest]:.2f} and "
                f"{distances[widest + 1]:.2f} mm along the slice normal (spacing {step:.2f} mm)"
            )
        raise SeriesError(f"{name}: uneven slice spacing ({gaps.min():.3f} to {gaps.max():.3f} mm)")
    travel = positions[-1] - positions[0]
    along = travel / np.linalg.norm(travel)
    if np.linalg.norm(along - normal) > DIRECTION_TOLERANCE * 10:
        raise SeriesError(
            f"{name}: slices are not stacked along their normal (a tilted gantry or a shear)"
        )
    geometry = Geometry(
        origin=tuple(float(v) for v in positions[0]),
        directions=np.column_stack([row, column, normal]),
        spacing=(step, first.pixel_spacing[0], first.pixel_spacing[1]),
    )
    return instances, geometry


def read_volume(series: Series) -> tuple[np.ndarray, Geometry]:
    """The voxels (z, y, x), rescaled per slice (HU for CT), and their geometry.

    Integral rescaling (the usual CT slope 1) keeps integers, int16 when every value the
    headers allow fits, else int32; any other rescaling gives float32. Only the pixel data
    of each file is read here: its header was read while finding the series.
    """
    instances, geometry = slice_geometry(series)
    volume = np.empty((len(instances), instances[0].rows, instances[0].columns), _dtype(instances))
    for index, instance in enumerate(instances):
        slope, intercept = instance.rescale
        pixels = pixel_array(instance.path)
        if slope == 1:
            np.add(pixels, intercept, out=volume[index], casting="unsafe")
        else:
            np.multiply(pixels, slope, out=volume[index], casting="unsafe")
            volume[index] += intercept
    return volume, geometry


def _dtype(instances: list[Instance]) -> type:
    rescales = {i.rescale for i in instances}
    if not all(slope.is_integer() and intercept.is_integer() for slope, intercept in rescales):
        return np.float32
    ends = [
        end * slope + intercept
        for i in instances
        for end in i.stored_range
        for slope, intercept in [i.rescale]
    ]
    return np.int16 if min(ends) >= -(2**15) and max(ends) < 2**15 else np.int32
