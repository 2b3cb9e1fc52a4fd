"""DICOM files as the 2-D slices they hold, read from their headers only.

A single-frame image is one slice (a Siemens mosaic, a slice per tile). A multi-frame one is a
slice per frame: an enhanced object (CT, MR, PET...) places each frame through its per-frame
functional groups (falling back on the shared ones), an RT dose grid through
GridFrameOffsetVector. Frames that nothing places (a cine
loop, a multi-frame secondary capture) keep no position, and cannot become a volume.
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from .acquisition import Acquisition, acquisition_of, group_value
from .deid import has_burned_in_annotation
from .mosaic import mosaic_tiles
from .pixels import PixelLayout, pixel_layout
from .values import as_floats, as_int

AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
PARALLEL_FROM = 64  # files; below this, starting processes costs more than it saves
MAX_WORKERS = 8


@dataclass(frozen=True)
class Slice:
    """What grouping and geometry need to know of one frame of one DICOM file."""

    path: Path
    frame: int  # the frame's index in its file
    series_uid: str
    study_uid: str
    series_number: int | None
    description: str
    modality: str
    image_type: tuple[str, ...]
    stack: str  # an enhanced object's StackID; '' where there is none
    orientation: tuple[float, ...] | None  # row then column direction cosines
    position: tuple[float, float, float] | None
    pixel_spacing: tuple[float, float] | None  # (between rows, between columns)
    gantry_tilt: float
    rescale: tuple[float, float]  # slope, intercept
    units: str  # of the rescaled values
    pixels: PixelLayout
    burned_in: str | None  # why its pixels may show identifying text, if they may
    acquisition: Acquisition  # its place in a 4D acquisition (volume order, diffusion)
    region: tuple[int, int, int, int] | None = None  # a mosaic tile: top, left, rows, columns

    @property
    def rows(self) -> int:
        return self.region[2] if self.region else self.pixels.rows

    @property
    def columns(self) -> int:
        return self.region[3] if self.region else self.pixels.columns

    def cut(self, frames: np.ndarray) -> np.ndarray:
        """Its pixels among the frames of its file."""
        image = frames[self.frame]
        if self.region is None:
            return image
        top, left, rows, columns = self.region
        return image[top : top + rows, left : left + columns]


def read_slices(path: Path) -> list[Slice]:
    """The slices of the DICOM file at `path`, from its header; raises InvalidDicomError for
    a file that is not a DICOM image."""
    with open(path, "rb") as stream:
        return _slices_in(path, stream)


class DamagedDicom(ValueError):
    """A DICOM image file cut short or broken; the message says where."""

    def __init__(self, reason: str, series_uid: str = ""):
        super().__init__(reason)
        self.series_uid = series_uid


def _slices_in(path: Path, stream: BinaryIO) -> list[Slice]:
    header = pydicom.dcmread(stream, stop_before_pixels=True)
    here = stream.tell()
    ended = stream.read(1) == b""
    stream.seek(here)
    if "Rows" not in header or ended:
        if "Rows" in header or _is_image_class(header):
            raise DamagedDicom(
                f"it ends at byte {here}, before its image's "
                + ("pixel data" if "Rows" in header else "attributes"),
                str(header.get("SeriesInstanceUID", "") or ""),
            )
        raise InvalidDicomError(f"{path} holds no image")
    layout = pixel_layout(header, stream)
    modality = str(header.get("Modality", ""))
    common = {
        "path": path,
        "series_uid": str(header.get("SeriesInstanceUID", "")),
        "study_uid": str(header.get("StudyInstanceUID", "")),
        "series_number": as_int(header.get("SeriesNumber")),
        "description": str(header.get("SeriesDescription", "")),
        "modality": modality,
        "image_type": tuple(str(v) for v in header.get("ImageType", ())),
        "gantry_tilt": float(header.get("GantryDetectorTilt", 0) or 0),
        "units": _units(header, modality),
        "pixels": layout,
        "burned_in": has_burned_in_annotation(header),
    }
    if "PerFrameFunctionalGroupsSequence" in header:
        return _enhanced_frames(header, common)
    common["acquisition"] = acquisition_of(header)
    orientation = as_floats(header.get("ImageOrientationPatient"), 6)
    position = as_floats(header.get("ImagePositionPatient"), 3)
    plane = {
        "stack": "",
        "orientation": orientation,
        "pixel_spacing": as_floats(header.get("PixelSpacing"), 2),
        "rescale": _rescale(header),
    }
    if layout.frames == 1:
        tiles = None
        if "MOSAIC" in common["image_type"]:
            tiles = mosaic_tiles(header, orientation, plane["pixel_spacing"], position)
        if tiles:
            return [
                Slice(frame=0, position=tile.position, region=tile.region, **plane, **common)
                for tile in tiles
            ]
        return [Slice(frame=0, position=position, **plane, **common)]
    positions = _dose_grid_positions(header, orientation, position, layout.frames)
    return [
        Slice(frame=index, position=positions[index], **plane, **common)
        for index in range(layout.frames)
    ]


@dataclass(frozen=True)
class Unreadable:
    """A file under the source that holds no slice: why, and whether it is a damaged DICOM
    file (which must refuse its series, never shorten it) or not DICOM at all."""

    path: Path
    reason: str
    damaged_dicom: bool
    series_uid: str = ""  # when what could be read of a damaged header names its series


def find_slices(folder: Path) -> tuple[list[Slice], list[Unreadable]]:
    """Every slice of every DICOM image under `folder` (DICOMDIR files skipped), and every
    other file with the reason it holds none; raises OSError for a file or folder that cannot
    be opened. Headers are read in parallel processes when there are enough files to pay for
    them."""
    paths = [
        Path(directory, name)
        for directory, _, names in os.walk(folder, onerror=_raise)
        for name in sorted(names)
        if name.upper() != "DICOMDIR"
    ]
    workers = min(os.cpu_count() or 1, MAX_WORKERS)
    if workers > 1 and len(paths) >= PARALLEL_FROM:
        context = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(workers, mp_context=context) as pool:
            chunk = -(-len(paths) // (workers * 4))
            results = list(pool.map(_slices_or_why, paths, chunksize=chunk))
    else:
        results = [_slices_or_why(path) for path in paths]
    found = [item for slices in results if isinstance(slices, list) for item in slices]
    unreadable = [result for result in results if isinstance(result, Unreadable)]
    return found, unreadable


def _slices_or_why(path: Path) -> list[Slice] | Unreadable:
    with open(path, "rb") as stream:
        try:
            return _slices_in(path, stream)
        except Exception as error:  # pydicom raises many kinds (OSError, struct.error...)
            return _why_unreadable(path, error)


def _why_unreadable(path: Path, error: Exception) -> Unreadable:
    """What a file that gave no slice is: a DICOM file with no image, a damaged one (with its
    series, if the part that can be read names it), or not DICOM."""
    if isinstance(error, DamagedDicom):
        return Unreadable(path, f"a damaged DICOM file: {error}", True, error.series_uid)
    if isinstance(error, InvalidDicomError) and "holds no image" in str(error):
        return Unreadable(path, "a DICOM file with no image (not a slice)", damaged_dicom=False)
    with open(path, "rb") as stream:
        start = stream.read(132)
    if start[128:132] != b"DICM":
        return Unreadable(path, "not a DICOM file", damaged_dicom=False)
    detail = str(error).splitlines()[0] if str(error) else type(error).__name__
    size = path.stat().st_size
    return Unreadable(
        path,
        f"a damaged DICOM file ({size} bytes; its header cannot be read: {detail})",
        damaged_dicom=True,
        series_uid=_series_uid_of_damaged(path),
    )


def _series_uid_of_damaged(path: Path) -> str:
    """The SeriesInstanceUID that the readable start of a damaged file holds, or ''."""
    try:
        partial = pydicom.dcmread(path, stop_before_pixels=True, force=True, defer_size=256)
        return str(partial.get("SeriesInstanceUID", "") or "")
    except Exception:  # it is damaged: what cannot be read names nothing
        return ""


def _is_image_class(header: Dataset) -> bool:
    """Whether the file's SOP class is one of images (or a dose grid), which hold pixels."""
    meta = header.get("file_meta")
    uid = header.get("SOPClassUID") or (meta.get("MediaStorageSOPClassUID") if meta else None)
    name = pydicom.uid.UID(str(uid)).name if uid else ""
    return "Image Storage" in name or name == "RT Dose Storage"


def _raise(error: OSError) -> None:
    raise error


def _enhanced_frames(header: Dataset, common: dict) -> list[Slice]:
    """A slice per frame of an enhanced multi-frame object, placed by its functional groups."""
    shared = (header.get("SharedFunctionalGroupsSequence") or [Dataset()])[0]
    slices = []
    for index, own in enumerate(header.PerFrameFunctionalGroupsSequence):
        groups = (own, shared)
        acquisition = acquisition_of(header, groups)
        slope = group_value(groups, "PixelValueTransformationSequence", "RescaleSlope")
        intercept = group_value(groups, "PixelValueTransformationSequence", "RescaleIntercept")
        slices.append(
            Slice(
                frame=index,
                stack=str(group_value(groups, "FrameContentSequence", "StackID") or ""),
                orientation=as_floats(
                    group_value(groups, "PlaneOrientationSequence", "ImageOrientationPatient"), 6
                ),
                position=as_floats(
                    group_value(groups, "PlanePositionSequence", "ImagePositionPatient"), 3
                ),
                pixel_spacing=as_floats(
                    group_value(groups, "PixelMeasuresSequence", "PixelSpacing"), 2
                ),
                rescale=(float(slope or 1), float(intercept or 0)),
                acquisition=acquisition,
                **common,
            )
        )
    return slices


def _dose_grid_positions(header, orientation, position, frames: int) -> list:
    """Where the frames of an RT dose grid lie, from GridFrameOffsetVector: offsets along the
    normal from the first frame (relative form) or, for an axial grid, z positions (absolute
    form). Frames of other multi-frame objects have no position."""
    offsets = as_floats(header.get("GridFrameOffsetVector"), frames)
    if offsets is None or orientation is None or position is None:
        return [None] * frames
    row, column = np.array(orientation[:3]), np.array(orientation[3:])
    normal = np.cross(row, column)
    if offsets[0] != 0:
        if not np.allclose(orientation, AXIAL):
            return [None] * frames
        offsets = tuple(offset - position[2] for offset in offsets)
    return [tuple(float(v) for v in np.array(position) + offset * normal) for offset in offsets]


def _rescale(header: Dataset) -> tuple[float, float]:
    if "DoseGridScaling" in header:
        return float(header.DoseGridScaling), 0.0
    return float(header.get("RescaleSlope", 1) or 1), float(header.get("RescaleIntercept", 0) or 0)


def _units(header: Dataset, modality: str) -> str:
    if modality == "CT":
        return "HU"
    if modality == "RTDOSE":
        dose_units = str(header.get("DoseUnits", ""))
        return {"GY": "Gy", "RELATIVE": "relative"}.get(dose_units, "arbitrary")
    return "arbitrary"
