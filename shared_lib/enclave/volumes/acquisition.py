"""Where a slice sits in a 4D acquisition (diffusion or functional MRI): the numbers that order
its volumes, and for diffusion its b-value and gradient direction, read from the standard
attributes or, where a vendor keeps them privately, from its private ones.

The private elements are read here, from the original header, because de-identification
removes them before anything is stored.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from .values import as_float, as_floats, as_int

# Siemens: b-value (IS) and gradient direction in the patient frame (FD, 3 values).
SIEMENS_B_VALUE, SIEMENS_GRADIENT = 0x0019100C, 0x0019100E
# GE: b-value (first value of a slop integer list) and gradient along GE's own image axes,
# whose first two point against the image's row and column directions.
GE_B_VALUE = 0x00431039
GE_GRADIENT = (0x001910BB, 0x001910BC, 0x001910BD)


@dataclass(frozen=True)
class Acquisition:
    """A slice's place in its acquisition."""

    instance: int | None = None  # InstanceNumber
    acquisition: int | None = None  # AcquisitionNumber
    temporal: int | None = None  # TemporalPositionIdentifier, or an enhanced frame's index
    b_value: float | None = None
    gradient: tuple[float, float, float] | None = None
    gradient_frame: str = "patient"  # 'patient' (LPS) or 'image' (row, column, normal)
    repetition_time_ms: float | None = None

    @property
    def order(self) -> tuple:
        """How volumes are ordered: time, then acquisition, then instance number."""
        return tuple(v if v is not None else -1 for v in (self.temporal, self.acquisition))


def acquisition_of(header: Dataset, frame: tuple[Dataset, ...] = ()) -> Acquisition:
    """A slice's acquisition from its header, and, for a frame of an enhanced object, from
    its functional groups (`frame`: its own, then the shared ones)."""
    temporal = group_value(frame, "FrameContentSequence", "TemporalPositionIndex")
    if temporal is None:
        temporal = header.get("TemporalPositionIdentifier")
    b_value, gradient, gradient_frame = _diffusion(header, frame)
    return Acquisition(
        instance=as_int(header.get("InstanceNumber")),
        acquisition=as_int(header.get("AcquisitionNumber")),
        temporal=as_int(temporal),
        b_value=b_value,
        gradient=gradient,
        gradient_frame=gradient_frame,
        repetition_time_ms=as_float(header.get("RepetitionTime")),
    )


def _diffusion(header: Dataset, frame: tuple[Dataset, ...]):
    """(b-value, gradient direction, its frame), or Nones where there is no diffusion."""
    for group in (*frame, header):
        items = group.get("MRDiffusionSequence")
        if items:
            item = items[0]
            directions = item.get("DiffusionGradientDirectionSequence")
            vector = directions[0].get("DiffusionGradientOrientation") if directions else None
            return as_float(item.get("DiffusionBValue")), as_floats(vector, 3), "patient"
    if "DiffusionBValue" in header:
        vector = header.get("DiffusionGradientOrientation")
        return as_float(header.DiffusionBValue), as_floats(vector, 3), "patient"
    if SIEMENS_B_VALUE in header:
        vector = header[SIEMENS_GRADIENT].value if SIEMENS_GRADIENT in header else None
        return as_float(header[SIEMENS_B_VALUE].value), as_floats(vector, 3), "patient"
    if GE_B_VALUE in header:
        values = header[GE_B_VALUE].value
        first = values[0] if isinstance(values, list | tuple | MultiValue) else values
        return (*_ge_diffusion(as_float(first), header), "image")
    return None, None, "patient"


def _ge_diffusion(b_value: float | None, header: Dataset):
    """GE's b-value and gradient in the image frame. GE scales the gradient rather than the
    b-value for the lower b-values of a series: the true b-value is the nominal one times the
    squared length of the gradient (rounded, as the protocol states it)."""
    raw = as_floats([header[t].value if t in header else None for t in GE_GRADIENT], 3)
    if raw is None or b_value is None:
        return b_value, None
    gradient = (-raw[0], -raw[1], raw[2])
    return float(round(b_value * sum(v * v for v in gradient))), gradient


def group_value(groups: tuple[Dataset, ...], macro: str, keyword: str):
    """A value of a functional group macro: the frame's own before the shared one."""
    for group in groups:
        items = group.get(macro)
        if items and keyword in items[0]:
            return items[0][keyword].value
    return None
