"""A slide ingested with `enclave dataset ingest slides` and granted to a project is read, tiled
and viewed by the library inside that project's sandboxed session."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import tiffslide

from enclave_harness import run_in_project_session
from slide_data import ingest_named_slides, slide_path

pytestmark = pytest.mark.e2e

USER, PROJECT, DATASET = "pia", "pathology-study", "ds-pathology"
IN_SESSION = """
import hashlib, json
import enclave
slide = enclave.open_slide("ds-pathology/cmu-1-small-region")
region = slide.read_region((100, 200), 0, (256, 256), as_array=True)
tiles = list(slide.tiles(256))
snapshot = enclave.view(slide)  # no display in a session: rendered on a private Xvfb
print(json.dumps({
    "datasets": enclave.datasets(),
    "objects": sorted(enclave.dataset("ds-pathology").objects),
    "region": hashlib.sha256(region.tobytes()).hexdigest(),
    "tiles": len(tiles),
    "png": len(snapshot._repr_png_()),
    "contrast": float(snapshot.pixels[..., :3].std()),
}))
"""


def test_a_granted_slide_is_read_tiled_and_viewed_inside_a_session(enclave):
    source = slide_path("cmu-1-small-region.svs")
    (outcome,) = ingest_named_slides([source], DATASET, enclave.site.data_root, show_progress=False)
    assert outcome.error is None
    found = run_in_project_session(enclave, USER, PROJECT, [DATASET], IN_SESSION)
    assert found["datasets"] == [DATASET], "only the granted dataset is mounted"
    assert found["objects"] == ["cmu-1-small-region"]
    expected = np.asarray(tiffslide.TiffSlide(source).read_region((100, 200), 0, (256, 256)))
    assert found["region"] == hashlib.sha256(expected[..., :3].tobytes()).hexdigest()
    assert found["tiles"] > 0
    assert found["png"] > 10_000 and found["contrast"] > 20, "the view is an image of the slide"
