"""The leading axis of a 4D volume: the time points of a functional series, with their
repetition time, or the volumes of a diffusion series, each with its b-value and gradient
direction in the image's own frame (along its rows, its columns and its slice normal).

Kept in the store beside the geometry, and written beside a NIfTI file as the `.bval` and
`.bvec` files that diffusion tools read, in the form dicom2nifti writes them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .acquisition import Acquisition

TIME, DIFFUSION = "t", "volume"


class VolumeAxisError(ValueError):
    """Volumes whose encoding cannot be told; the message says which and why."""


@dataclass(frozen=True)
class VolumeAxis:
    """What each volume along the leading axis of a 4D volume is."""

    name: str  # TIME ('t') for a functional series, DIFFUSION ('volume') for diffusion
    count: int
    repetition_time_ms: float | None = None
    b_values: tuple[float, ...] = ()  # diffusion: one per volume
    gradients: tuple[tuple[float, float, float], ...] = ()  # unit vectors; zero where b is 0

    @property
    def step_seconds(self) -> float:
        """The time between volumes, for a time axis whose repetition time is known; else 1."""
        if self.name == TIME and self.repetition_time_ms:
            return self.repetition_time_ms / 1000
        return 1.0

    def attributes(self) -> dict:
        """How the store keeps it."""
        kept = {"axis": self.name, "count": self.count}
        if self.repetition_time_ms is not None:
            kept["repetition_time_ms"] = self.repetition_time_ms
        if self.name == DIFFUSION:
            kept["b_values"] = list(self.b_values)
            kept["gradients_image_frame"] = [list(g) for g in self.gradients]
        return kept

    @classmethod
    def from_attributes(cls, kept: dict) -> VolumeAxis:
        return cls(
            name=kept["axis"],
            count=int(kept["count"]),
            repetition_time_ms=kept.get("repetition_time_ms"),
            b_values=tuple(float(b) for b in kept.get("b_values", ())),
            gradients=tuple(
                tuple(float(v) for v in g) for g in kept.get("gradients_image_frame", ())
            ),
        )

    def bval_text(self) -> str:
        """FSL's .bval: the b-values on one line."""
        return " ".join(_number(b) for b in self.b_values) + "\n"

    def bvec_text(self) -> str:
        """FSL's .bvec: three lines (x, y, z) of the gradients in the NIfTI voxel frame, the
        column axis reversed, as dicom2nifti writes them."""
        vectors = np.array(self.gradients, dtype=float).reshape(-1, 3) * [1.0, -1.0, 1.0] + 0.0
        return "".join(" ".join(str(float(v)) for v in row) + "\n" for row in vectors.T)


def volume_axis(
    volumes: Sequence[Acquisition], directions: np.ndarray, where: str = "the series"
) -> VolumeAxis:
    """The axis of these volumes (one acquisition each, in order) of an image whose row,
    column and normal directions are the columns of `directions`: diffusion when any volume
    has a b-value, else time. Raises VolumeAxisError when some volumes of a diffusion series
    say nothing of their b-value."""
    repetition = volumes[0].repetition_time_ms
    if all(v.b_value is None for v in volumes):
        return VolumeAxis(TIME, len(volumes), repetition)
    missing = [number for number, v in enumerate(volumes, 1) if v.b_value is None]
    if missing:
        raise VolumeAxisError(
            f"{where}: a diffusion series whose volume(s) {_listed(missing)} have no b-value"
        )
    b_values, gradients = [], []
    for volume in volumes:
        vector = np.zeros(3) if volume.gradient is None else np.array(volume.gradient, float)
        if volume.gradient_frame == "patient":
            vector = directions.T @ vector
        length = float(np.linalg.norm(vector))
        b_values.append(float(volume.b_value))
        has_direction = volume.b_value > 0 and length > 0
        gradients.append(tuple(float(v) for v in (vector / length if has_direction else [0] * 3)))
    return VolumeAxis(DIFFUSION, len(volumes), repetition, tuple(b_values), tuple(gradients))


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _listed(numbers: list[int]) -> str:
    shown = ", ".join(str(n) for n in numbers[:5])
    return shown + (f" and {len(numbers) - 5} more" if len(numbers) > 5 else "")
