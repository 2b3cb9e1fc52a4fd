"""Where the tissue is, from a thumbnail: Otsu's threshold on how far pixels are from white."""

from __future__ import annotations

import numpy as np


def otsu_threshold(values: np.ndarray) -> float:
    """The threshold that best separates `values` (uint8) into two classes."""
    histogram = np.bincount(values.ravel(), minlength=256).astype(np.float64)
    total = histogram.sum()
    if total == 0:
        return 0.0
    levels = np.arange(256)
    weight_low = np.cumsum(histogram)
    weight_high = total - weight_low
    mean_low = np.cumsum(histogram * levels)
    grand = mean_low[-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (grand * weight_low / total - mean_low) ** 2 / (weight_low * weight_high)
    between[~np.isfinite(between)] = 0
    return float(np.argmax(between))


def tissue_mask(rgb: np.ndarray) -> np.ndarray:
    """True where a (h, w, 3) uint8 thumbnail shows tissue rather than bright background.

    Stained tissue is darker and more saturated than the glass around it; each pixel is scored
    by how far it is from white (255 minus its darkest channel), and Otsu splits the scores.
    """
    score = 255 - rgb[..., :3].min(axis=2)
    threshold = otsu_threshold(score)
    return score > max(threshold, 8)  # a blank slide is all background, not all tissue
