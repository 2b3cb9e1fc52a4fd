"""DICOM series: slices grouped, ordered along their normal and checked before any volume is
built from them. A 4D series (diffusion or functional MRI) is split into its volumes, each
checked the same way, and read as one array with a leading volume axis.

Spacing comes from the positions of the slices, never from SliceThickness. A series with too
few slices, two slices at one place, a missing slice, uneven spacing, a tilted gantry or an
orientation that changes is refused with a message naming the series and the problem: it is
never resampled.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from .pixels import read_frames
from .slices import Slice
from .volume_axis import VolumeAxis, VolumeAxisError, volume_axis

MIN_SLICES = 3
SPACING_TOLERANCE = 0.01  # relative difference between slice gaps that counts as uneven
DIRECTION_TOLERANCE = 1e-3
READ_THREADS = 4


class SeriesError(ValueError):
    """A series that cannot become a volume; the message names it and says why."""


@dataclass(frozen=True)
class Series:
    """Slices of one series that share type, size and stack, in file order."""

    uid: str
    study_uid: str
    number: int | None
    description: str
    modality: str
    slices: tuple[Slice, ...]
    orientation_changes: bool = False  # the same SeriesInstanceUID holds other orientations

    @property
    def paths(self) -> list[Path]:
        """The files its slices come from, each once."""
        return list(dict.fromkeys(s.path for s in self.slices))

    @property
    def units(self) -> str:
        return self.slices[0].units

    @property
    def name(self) -> str:
        label = f"series {self.number}" if self.number is not None else "series"
        about = f" '{self.description}'" if self.description else ""
        return f"{label}{about} ({self.modality}, {self.uid})"


def group_series(slices: Iterable[Slice]) -> list[Series]:
    """Slices grouped by SeriesInstanceUID, split further on image type, size and (in an
    enhanced object) stack. A group whose slices do not all share one orientation stays one
    series, flagged: it is reported once, as such, rather than as many one-slice stacks."""
    by_key: dict[tuple, list[Slice]] = defaultdict(list)
    for item in slices:
        key = (item.series_uid, item.image_type, item.rows, item.columns, item.stack)
        by_key[key].append(item)
    series = []
    for members in by_key.values():
        first = members[0]
        orientations = {
            tuple(round(v, 4) for v in i.orientation) if i.orientation else None for i in members
        }
        series.append(
            Series(
                uid=first.series_uid,
                study_uid=first.study_uid,
                number=first.series_number,
                description=first.description,
                modality=first.modality,
                slices=tuple(sorted(members, key=lambda i: (str(i.path), i.frame))),
                orientation_changes=len(orientations) > 1,
            )
        )
    return sorted(series, key=lambda s: (s.number is None, s.number or 0, s.uid, s.name))


@dataclass(frozen=True)
class Geometry:
    """Where a volume's voxels are, in the patient's LPS frame (millimetres).

    `directions` holds the unit vectors of the x (along a row), y (down a column) and z
    (slice) index axes as its columns; `spacing` is (z, y, x). A 4D volume's `axis` says
    what its leading axis is.
    """

    origin: tuple[float, float, float]
    directions: np.ndarray
    spacing: tuple[float, float, float]
    axis: VolumeAxis | None = None

    def same_place(self, other: Geometry) -> bool:
        """Whether two volumes' voxels lie at the same places (to a micrometre)."""
        return bool(
            np.allclose(self.origin, other.origin, atol=1e-3)
            and np.allclose(self.directions, other.directions, atol=1e-6)
            and np.allclose(self.spacing, other.spacing, atol=1e-6)
        )

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


def slice_geometry(series: Series) -> tuple[list[Slice], Geometry]:
    """The slices in order along their normal, and the volume's geometry; raises SeriesError
    naming the series when it cannot be a regular volume."""
    slices = list(series.slices)
    name = series.name
    if series.orientation_changes:
        raise SeriesError(f"{name}: the orientation changes within the series")
    if any("MOSAIC" in s.image_type and s.region is None for s in slices):
        raise SeriesError(
            f"{name}: a Siemens mosaic whose header does not say how to cut it into slices "
            "(no CSA image header with NumberOfImagesInMosaic, or no SpacingBetweenSlices)"
        )
    if len(slices) < MIN_SLICES:
        raise SeriesError(f"{name}: too few slices ({len(slices)}, at least {MIN_SLICES})")
    first = slices[0]
    if first.orientation is None or any(s.position is None for s in slices):
        if first.pixels.frames > 1:
            raise SeriesError(
                f"{name}: its frames are not placed in space (no per-frame functional groups "
                "or dose grid offsets): a cine or capture, not a volume"
            )
        raise SeriesError(f"{name}: no ImageOrientationPatient or ImagePositionPatient")
    if first.pixel_spacing is None:
        raise SeriesError(f"{name}: no PixelSpacing")
    if len({s.pixel_spacing for s in slices}) > 1:
        raise SeriesError(f"{name}: the pixel spacing changes within the series")
    if any(abs(s.gantry_tilt) > DIRECTION_TOLERANCE for s in slices):
        raise SeriesError(f"{name}: the gantry is tilted ({first.gantry_tilt} degrees)")
    row = np.array(first.orientation[:3])
    column = np.array(first.orientation[3:])
    normal = np.cross(row, column)
    positions = np.array([s.position for s in slices])
    distances = positions @ normal
    order = np.argsort(distances, kind="stable")
    slices = [slices[k] for k in order]
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
    return slices, geometry


def split_volumes(series: Series) -> list[Series]:
    """The volumes of a 4D series, in acquisition order: every slice position is taken once
    per volume, and the n-th slice at each position (by temporal position, acquisition number,
    then instance number) belongs to the n-th volume. A 3D series is its own one volume;
    raises SeriesError when positions are taken unevenly."""
    slices = list(series.slices)
    first = slices[0]
    if first.orientation is None or any(s.position is None for s in slices):
        return [series]
    row, column = np.array(first.orientation[:3]), np.array(first.orientation[3:])
    normal = np.cross(row, column)
    at: dict[float, list[Slice]] = defaultdict(list)
    for item in slices:
        at[round(float(np.array(item.position) @ normal) / DIRECTION_TOLERANCE)].append(item)
    counts = {len(members) for members in at.values()}
    if counts == {1}:
        return [series]
    if len(counts) > 1:
        raise SeriesError(
            f"{series.name}: its slice positions are taken {min(counts)} to {max(counts)} "
            "times: neither one volume nor whole volumes of a 4D series"
        )

    def order(item: Slice) -> tuple:
        number = item.acquisition.instance
        place = (str(item.path), item.frame)
        return (*item.acquisition.order, number if number is not None else -1, *place)

    ranked = [sorted(members, key=order) for members in at.values()]
    return [
        replace(series, slices=tuple(members[volume] for members in ranked))
        for volume in range(counts.pop())
    ]


def read_volume(series: Series) -> tuple[np.ndarray, Geometry]:
    """The voxels (z, y, x), rescaled per slice (HU for CT), and their geometry; for a 4D
    series (volume, z, y, x), every volume at the same place, with the geometry's `axis`
    saying what each volume is.

    Integral rescaling (the usual CT slope 1) keeps integers, int16 when every value the
    headers allow fits, else int32; any other rescaling gives float32. Float pixel data keeps
    its own type (float64 stays float64). Only the pixel data of each file is read here,
    once: its header was read while finding the series.
    """
    placed = [slice_geometry(volume) for volume in split_volumes(series)]
    slices, geometry = placed[0]
    for number, (_, elsewhere) in enumerate(placed[1:], 2):
        if not elsewhere.same_place(geometry):
            raise SeriesError(f"{series.name}: volume {number} does not lie where volume 1 does")
    ordered = [item for volume, _ in placed for item in volume]
    values = np.empty((len(ordered), slices[0].rows, slices[0].columns), _dtype(ordered))
    places: dict[Path, list[tuple[int, Slice]]] = defaultdict(list)
    for index, item in enumerate(ordered):
        places[item.path].append((index, item))

    def fill(path: Path) -> None:
        members = places[path]
        try:
            frames = read_frames(path, members[0][1].pixels)
        except (ValueError, OSError) as error:
            raise SeriesError(f"{series.name}: {error}") from None
        for index, item in members:
            slope, intercept = item.rescale
            if slope == 1:
                np.add(item.cut(frames), intercept, out=values[index], casting="unsafe")
            else:
                np.multiply(item.cut(frames), slope, out=values[index], casting="unsafe")
                values[index] += intercept

    # Reading and rescaling release the GIL: files are filled in parallel.
    with ThreadPoolExecutor(READ_THREADS) as pool:
        for _ in pool.map(fill, places):
            pass
    if len(placed) == 1:
        return values, geometry
    try:
        axis = volume_axis(
            [_one_encoding(volume, series.name) for volume, _ in placed],
            geometry.directions,
            series.name,
        )
    except VolumeAxisError as error:
        raise SeriesError(str(error)) from None
    return values.reshape(len(placed), len(slices), *values.shape[1:]), replace(geometry, axis=axis)


def _one_encoding(volume: list[Slice], name: str):
    """The acquisition of a volume whose slices agree on their diffusion encoding."""
    encodings = {(s.acquisition.b_value, s.acquisition.gradient) for s in volume}
    if len(encodings) > 1:
        raise SeriesError(f"{name}: the slices of one volume differ in b-value or gradient")
    return volume[0].acquisition


def _dtype(slices: list[Slice]) -> type:
    floats = {s.pixels.float_bytes for s in slices} - {0}
    if floats:
        return np.float64 if 8 in floats else np.float32
    rescales = {s.rescale for s in slices}
    if not all(slope.is_integer() and intercept.is_integer() for slope, intercept in rescales):
        return np.float32
    ranges = {s.pixels.stored_range for s in slices}
    ends = [
        end * slope + intercept for slope, intercept in rescales for span in ranges for end in span
    ]
    return np.int16 if min(ends) >= -(2**15) and max(ends) < 2**15 else np.int32
