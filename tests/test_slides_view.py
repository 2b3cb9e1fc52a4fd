"""napari shows a slide at physical scale, rendered on a virtual display (Xvfb) when the
session has no screen, as in a notebook."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import enclave
from offscreen import bounding_box, run_without_display
from slide_data import slide_path

RENDER = """
import json, sys
from pathlib import Path
import enclave
from enclave.viewer import render, start_virtual_display

slide = enclave.open_slide(Path(sys.argv[1]))
snapshot = enclave.view(slide)  # no DISPLAY: starts Xvfb and renders off-screen
snapshot.save(sys.argv[2])
again = enclave.view(slide)  # the virtual display is not a screen: an image again
import napari
viewer = napari.Viewer(show=False)
data, options, _ = slide.to_napari()
layer = viewer.add_image(data, **options)
print(json.dumps({
    "display": start_virtual_display(),
    "again": type(again).__name__,
    "layers": len(viewer.layers),
    "rgb": layer.rgb,
    "scale": list(layer.scale),
    "units": [str(u) for u in layer.units],
    "extent": [list(map(float, row)) for row in layer.extent.world],
}))
"""


@pytest.mark.slow
def test_napari_renders_the_slide_off_screen_at_physical_scale(tmp_path):
    source = slide_path("cmu-1-small-region.svs")
    shot = tmp_path / "view.png"
    facts = run_without_display(RENDER, str(source), str(shot))
    assert facts["display"].startswith(":")
    assert facts["again"] == "Snapshot"
    assert facts["layers"] == 1 and facts["rgb"]
    assert facts["scale"] == pytest.approx([0.499, 0.499])
    assert facts["units"] == ["micrometer", "micrometer"]
    (y0, x0), (y1, x1) = facts["extent"]  # world extent: minimum row, then maximum row
    assert (y1 - y0, x1 - x0) == pytest.approx((2967 * 0.499, 2220 * 0.499), rel=0.01)

    pixels = np.asarray(Image.open(shot).convert("RGB"))
    assert pixels.std() > 20, "the screenshot is not blank"
    top, bottom, left, right = bounding_box(pixels)
    assert (right - left) / (bottom - top) == pytest.approx(2220 / 2967, rel=0.03)
    shown = pixels[top:bottom, left:right].astype(float).mean(axis=2)
    slide = enclave.open_slide(source)
    expected = np.asarray(
        slide.thumbnail((4096, 4096)).convert("L").resize((right - left, bottom - top))
    ).astype(float)
    correlation = np.corrcoef(shown.ravel(), expected.ravel())[0, 1]
    assert correlation > 0.9, f"the screenshot does not look like the slide ({correlation:.2f})"
