"""Reading slides: `open_slide` on a converted store and on the source file, with OpenSlide's
conventions, physical coordinates, tiles on tissue and references that cannot escape."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tiffslide

import enclave
from enclave.catalog import CatalogError
from enclave.slides.jpeg_tiles import JpegLevel, TileCache
from enclave.slides.tissue import otsu_threshold, tissue_mask
from slide_data import ingest_named_slides, slide_path

DATASET = "ds-read"


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    sources = [slide_path("cmu-1-small-region.svs"), slide_path("boxes.tiff")]
    assert all(
        o.error is None for o in ingest_named_slides(sources, DATASET, root, show_progress=False)
    )
    return root


@pytest.fixture(scope="module")
def cmu(root):
    return enclave.open_slide(f"{DATASET}/cmu-1-small-region", root)


def test_levels_are_lazy_xarrays_in_micrometres(cmu):
    level0, level1 = cmu.levels[:2]
    assert level0.dims == ("c", "y", "x")
    assert level0.shape == (3, 2967, 2220)
    assert type(level0.data).__module__.startswith("dask")
    assert float(level0.x[100]) == pytest.approx(100 * 0.499)
    assert float(level1.x[100]) == pytest.approx(200 * 0.499)
    assert level0.x.attrs["units"] == "micrometer"
    assert cmu.mpp == (0.499, 0.499)
    window = level0.sel(x=slice(0, 50), y=slice(0, 50)).values
    assert window.shape == (3, 101, 101)


@pytest.mark.parametrize(
    ("name", "reference", "location", "level", "size"),
    [
        ("cmu-1-small-region.svs", "cmu-1-small-region", (300, 700), 0, (512, 512)),
        ("boxes.tiff", "boxes", (37, 91), 1, (60, 40)),
        ("boxes.tiff", "boxes", (100, 20), 2, (30, 25)),  # downsample 4.016...
    ],
)
def test_regions_equal_tiffslides(root, name, reference, location, level, size):
    store = enclave.open_slide(f"{DATASET}/{reference}", root)
    expected = np.asarray(tiffslide.TiffSlide(slide_path(name)).read_region(location, level, size))
    region = store.read_region(location, level, size)
    assert region.mode == "RGBA" and region.size == size
    np.testing.assert_array_equal(np.asarray(region)[..., :3], expected[..., :3])
    np.testing.assert_array_equal(store.read_region(location, level, size, as_array=True), expected)


def test_copied_jpeg_tiles_are_decoded_once_and_the_cache_keeps_to_its_size(root):
    store = root / DATASET / "cmu-1-small-region.ome.zarr" / "0"
    cache = TileCache(limit=3 * 240 * 240 * 3)  # three decoded tiles
    level = JpegLevel(store, cache)
    source = tiffslide.TiffSlide(slide_path("cmu-1-small-region.svs"))
    expected = source.read_region((230, 250), 0, (300, 20), as_array=True)[..., :3]
    np.testing.assert_array_equal(level.channels_last(250, 270, 230, 530), expected)
    assert len(cache._tiles) == 3  # the region crosses three tiles: (1, 0), (1, 1), (1, 2)
    (store / "0" / "1" / "1").rename(store / "0" / "1" / "gone")  # read again: from the cache
    try:
        np.testing.assert_array_equal(level.channels_last(250, 270, 230, 530), expected)
        level.channels_last(0, 10, 0, 10)  # a fourth tile: the least recent one goes
        assert len(cache._tiles) == 3 and (store, 1, 0) not in cache._tiles
    finally:
        (store / "0" / "1" / "gone").rename(store / "0" / "1" / "1")


def test_a_region_beyond_the_edge_is_transparent_there(cmu):
    width, height = cmu.dimensions
    region = np.asarray(cmu.read_region((width - 100, height - 50), 0, (300, 200)))
    assert (region[:50, :100, 3] == 255).all()
    assert (region[50:, :, 3] == 0).all() and (region[:, 100:, 3] == 0).all()
    assert (region[50:, 100:, :3] == 0).all()
    with pytest.raises(ValueError, match="level 9 does not exist"):
        cmu.read_region((0, 0), 9, (10, 10))


def test_the_source_file_opens_as_the_same_slide(cmu):
    source = enclave.open_slide(slide_path("cmu-1-small-region.svs"))
    assert source.dimensions == cmu.dimensions and source.mpp == cmu.mpp
    for location in [(0, 0), (1234, 2011)]:
        np.testing.assert_array_equal(
            source.read_region(location, 0, (256, 256), as_array=True),
            cmu.read_region(location, 0, (256, 256), as_array=True),
        )
    assert source.level_count == 1 and cmu.level_count == 4


def test_tiles_cover_the_level_and_keep_to_tissue(cmu):
    every = list(cmu.tiles(256, tissue_only=False))
    assert len(every) == (2967 // 256) * (2220 // 256)
    on_tissue = list(cmu.tiles(256))
    assert 0 < len(on_tissue) < len(every)
    mask = cmu.tissue_mask()
    for tile in on_tissue:
        assert tile.tissue >= 0.5
        assert tile.pixels.shape == (256, 256, 3)
        np.testing.assert_array_equal(
            tile.pixels, cmu.read_region(tile.location, 0, (256, 256), as_array=True)
        )
        assert tile.position_um == pytest.approx(
            (tile.location[0] * 0.499, tile.location[1] * 0.499)
        )
    # Background tiles are brighter than tissue tiles.
    kept = {t.location for t in on_tissue}
    background = [t for t in every if t.location not in kept]
    assert np.mean([t.pixels.mean() for t in background]) > np.mean(
        [t.pixels.mean() for t in on_tissue]
    )
    assert 0 < mask.mean() < 1


def test_tiles_overlap_and_follow_the_level(cmu):
    tiles = list(cmu.tiles(200, level=1, overlap=50, tissue_only=False))
    first, second = tiles[0], tiles[1]
    assert (first.row, first.col, second.col) == (0, 0, 1)
    assert second.location == (300, 0), "stride 150 level-1 pixels = 300 level-0 pixels"
    np.testing.assert_array_equal(first.pixels[:, 150:], second.pixels[:, :50])
    with pytest.raises(ValueError, match="overlap"):
        next(cmu.tiles(64, overlap=64))


def test_the_thumbnail_fits_and_keeps_the_aspect(cmu):
    thumbnail = cmu.thumbnail((300, 300))
    assert max(thumbnail.size) == 300
    assert thumbnail.size[0] / thumbnail.size[1] == pytest.approx(2220 / 2967, rel=0.01)


def test_otsu_splits_two_populations_and_a_blank_thumbnail_has_no_tissue():
    values = np.concatenate([np.full(100, 30), np.full(100, 200)]).astype(np.uint8)
    assert 30 <= otsu_threshold(values) < 200
    assert not tissue_mask(np.full((50, 50, 3), 250, np.uint8)).any()


def test_to_napari_is_one_rgb_multiscale_layer_at_physical_scale(cmu):
    data, options, kind = cmu.to_napari()
    assert kind == "image" and options["rgb"] and options["multiscale"]
    assert [level.shape for level in data][:2] == [(2967, 2220, 3), (1484, 1110, 3)]
    assert options["scale"] == (0.499, 0.499)


@pytest.mark.parametrize(
    ("reference", "message"),
    [
        ("../ds-read/cmu", "is not a reference"),
        (f"{DATASET}/../x", "is not a reference"),
        ("/no-such-folder/slide", "is not a reference"),
        (f"{DATASET}/%2e%2e", "object '%2e%2e' is not valid"),
        ("DS-READ/cmu-1-small-region", "dataset 'DS-READ' is not valid"),
        (f"{DATASET}/nothing-here", "has no object 'nothing-here'"),
        ("absent/x", "there is no dataset 'absent'"),
        (f"{DATASET}/a\0b", "is not valid"),
        (f"{DATASET}/cmu-1-small-region\n", "is not valid"),
    ],
)
def test_bad_references_are_refused_by_name(root, reference, message):
    with pytest.raises(CatalogError, match=message.replace(".", r"\.")):
        enclave.open_slide(reference, root)


def test_a_dataset_linked_out_of_the_data_root_is_refused(root, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "ds-link").symlink_to(outside)
    with pytest.raises(CatalogError, match="resolves outside"):
        enclave.dataset("ds-link", root)


def test_the_catalog_lists_datasets_and_objects(root):
    assert DATASET in enclave.datasets(root)
    objects = enclave.dataset(DATASET, root).objects
    assert sorted(objects) == ["boxes", "cmu-1-small-region"]
    assert objects["boxes"].kind == "slide"
