"""DICOM values read as numbers, or None where a header holds none that makes sense."""

from __future__ import annotations


def as_int(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def as_float(value) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def as_floats(value, count: int) -> tuple[float, ...] | None:
    """`count` numbers, or None when the value holds another number of them or none."""
    if value is None:
        return None
    try:
        numbers = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        return None
    return numbers if len(numbers) == count else None
