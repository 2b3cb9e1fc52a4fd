"""napari shows a volume at physical scale (millimetres), rendered on a virtual display when
the session has no screen, as in a notebook: a real MR series, ingested, then viewed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from enclave.volumes.series import group_series, read_volume
from enclave.volumes.slices import find_slices
from enclave.volumes.store import write_volume
from offscreen import bounding_box, run_without_display

ANATOMICAL = (
    Path(__file__).resolve().parents[2] / "shared/data/dicom/dicom2nifti/generic/anatomical/001"
)

RENDER = """
import json, sys
from pathlib import Path
import enclave

volume = enclave.open_volume(Path(sys.argv[1]))
snapshot = enclave.view(volume)  # no DISPLAY: starts Xvfb and renders off-screen
snapshot.save(sys.argv[2])
import napari
viewer = napari.Viewer(show=False)
data, options, _ = volume.volume.to_napari()
layer = viewer.add_image(data, **options)
print(json.dumps({
    "scale": list(layer.scale),
    "units": [str(u) for u in layer.units],
    "extent": [list(map(float, row)) for row in layer.extent.world],
    "shown_slice": int(viewer.dims.current_step[0]),
}))
"""


@pytest.mark.slow
def test_napari_renders_a_volume_off_screen_in_millimetres(tmp_path):
    if not ANATOMICAL.is_dir():
        pytest.skip(f"{ANATOMICAL} is absent (../shared/data is not beside the checkout)")
    slices, _ = find_slices(ANATOMICAL)
    (series,) = group_series(slices)
    voxels, geometry = read_volume(series)
    store = tmp_path / "anatomical.ome.zarr"
    write_volume(store, "anatomical", voxels, geometry, series.modality, series.units)

    facts = run_without_display(RENDER, str(store), str(tmp_path / "view.png"))
    assert facts["scale"] == pytest.approx(list(geometry.spacing))
    assert facts["units"] == ["millimeter"] * 3
    # napari's world extent runs from the first voxel's centre to the last one's.
    (z0, y0, x0), (z1, y1, x1) = facts["extent"]
    depth, height, width = voxels.shape
    sz, sy, sx = geometry.spacing
    assert [z1 - z0, y1 - y0, x1 - x0] == pytest.approx(
        [(depth - 1) * sz, (height - 1) * sy, (width - 1) * sx]
    )

    pixels = np.asarray(Image.open(tmp_path / "view.png").convert("RGB"))
    assert pixels.std() > 20, "the screenshot is not blank"
    # The head on its dark background: where the slice is bright, on the canvas and in the
    # voxels scaled to the display range, must match in physical shape and in content.
    top, bottom, left, right = bounding_box(pixels)
    plane = voxels[facts["shown_slice"]].astype(float)
    grey = 255 * (plane - voxels.min()) / (voxels.max() - voxels.min())
    a, b, c, d = bounding_box(np.repeat(grey[..., None], 3, axis=2))
    assert (right - left) / (bottom - top) == pytest.approx((d - c) * sx / ((b - a) * sy), rel=0.05)
    shown = pixels[top:bottom, left:right].astype(float).mean(axis=2)
    expected = np.asarray(
        Image.fromarray(grey[a:b, c:d].astype(np.float32)).resize(
            (right - left, bottom - top), Image.Resampling.NEAREST
        )
    )
    correlation = np.corrcoef(shown.ravel(), expected.ravel())[0, 1]
    assert correlation > 0.9, f"the screenshot does not show the slice ({correlation:.2f})"
