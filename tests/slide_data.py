"""The real sample slides in ../shared/data/slides, and datasets ingested from them."""

from __future__ import annotations

from pathlib import Path

import pytest

SLIDES = Path(__file__).resolve().parents[2] / "shared" / "data" / "slides"
GOOD = ("cmu-1-small-region.svs", "boxes.tiff", "small.svs")
DAMAGED = ("unreadable.svs", "unopenable.tiff", "broken.svs")


def slide_path(name: str) -> Path:
    path = SLIDES / name
    if not path.is_file():
        pytest.skip(f"sample slide {path} is absent (../shared/data is not beside the checkout)")
    return path
