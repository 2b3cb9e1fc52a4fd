"""Ingesting real slides into OME-Zarr (0.4 keeping a source's JPEG tiles, 0.5 otherwise):
valid stores, exact pixels, nothing identifying, clear errors for damaged files and nothing
half-written registered."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
import tiffslide
import zarr
from ome_zarr_models.v04.image import Image as OmeImageV04
from ome_zarr_models.v05.image import Image as OmeImage
from pydantic_zarr.v2 import ArraySpec

from enclave.persons import SourceManifest
from enclave.slides.convert import halve
from enclave.slides.ingest import ingest_slides
from slide_data import DAMAGED, GOOD, KEY, ingest_named_slides, slide_manifest, slide_path

DATASET = "ds-slides"
# ome-zarr-models' 0.4 image model names pydantic-zarr's ArraySpec without importing it.
OmeImageV04.model_rebuild(_types_namespace={"ArraySpec": ArraySpec})


@pytest.fixture(scope="module")
def ingested(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    outcomes = ingest_named_slides(
        [slide_path(name) for name in GOOD], DATASET, root, show_progress=False
    )
    assert [o.error for o in outcomes] == [None, None, None]
    return root


def _manifest(root: Path) -> dict:
    return json.loads((root / DATASET / "dataset.json").read_text())


def _store(root: Path, object_id: str) -> Path:
    return root / DATASET / _manifest(root)["objects"][object_id]["path"]


def test_a_lossless_store_validates_as_ome_ngff_0_5(ingested):
    group = zarr.open_group(_store(ingested, "boxes"), mode="r")  # deflate tiles: decoded
    assert group.metadata.zarr_format == 3
    assert _manifest(ingested)["objects"]["boxes"]["format"] == "ome-zarr-0.5"
    image = OmeImage.from_zarr(group)
    (multiscale,) = image.ome_attributes.multiscales
    assert [axis.name for axis in multiscale.axes] == ["c", "y", "x"]
    level = group["0"]
    assert level.shards is not None, "levels are sharded"


@pytest.mark.parametrize("name", ["cmu-1-small-region.svs", "small.svs"])
def test_a_jpeg_slide_keeps_its_tiles_byte_for_byte_in_ome_ngff_0_4(ingested, name):
    object_id = name.split(".")[0]
    store = _store(ingested, object_id)
    group = zarr.open_group(store, mode="r")
    assert group.metadata.zarr_format == 2
    assert _manifest(ingested)["objects"][object_id]["format"] == "ome-zarr-0.4"
    (multiscale,) = OmeImageV04.from_zarr(group).attributes.multiscales
    assert [axis.name for axis in multiscale.axes] == ["c", "y", "x"]
    page = tifffile.TiffFile(slide_path(name)).pages[0]
    across = -(-page.imagewidth // page.tilewidth)
    with open(slide_path(name), "rb") as source:
        for index, (offset, count) in enumerate(
            zip(page.dataoffsets, page.databytecounts, strict=True)
        ):
            source.seek(offset)
            row, col = divmod(index, across)
            assert (store / "0" / "0" / str(row) / str(col)).read_bytes() == source.read(count)


def test_plain_zarr_in_a_fresh_process_reads_the_copied_tiles(ingested):
    """numcodecs finds imagecodecs' JPEG codec by Enclave's entry point: nothing to register."""
    level = _store(ingested, "cmu-1-small-region") / "0"
    code = "import sys, zarr; print(int(zarr.open_array(sys.argv[1])[:, 200:500, 100:400].sum()))"
    read = subprocess.run(
        [sys.executable, "-c", code, str(level)], capture_output=True, text=True, check=True
    )
    source = tiffslide.TiffSlide(slide_path("cmu-1-small-region.svs"))
    expected = source.read_region((100, 200), 0, (300, 300), as_array=True)[..., :3].sum()
    assert int(read.stdout) == int(expected)


def test_the_validator_rejects_a_store_without_axes(ingested, tmp_path):
    broken = tmp_path / "broken.ome.zarr"
    shutil.copytree(_store(ingested, "boxes"), broken)
    metadata = json.loads((broken / "zarr.json").read_text())
    del metadata["attributes"]["ome"]["multiscales"][0]["axes"]
    (broken / "zarr.json").write_text(json.dumps(metadata))
    with pytest.raises(ValueError, match="axes"):
        OmeImage.from_zarr(zarr.open_group(broken, mode="r"))


def test_napari_ome_zarr_opens_the_store_at_physical_scale(ingested):
    import npe2

    npe2.PluginManager.instance().discover()
    store = _store(ingested, "cmu-1-small-region")
    layers = npe2.read([str(store)], plugin_name="napari-ome-zarr", stack=False)
    assert layers, "napari-ome-zarr found no image"
    data, options, kind = layers[0]
    assert kind == "image"
    expected = [
        tuple(shape)
        for shape in _manifest(ingested)["objects"]["cmu-1-small-region"]["pixels"]["levels"]
    ]
    assert [tuple(level.shape[-2:]) for level in data] == expected
    assert tuple(options["scale"][-2:]) == pytest.approx((0.499, 0.499))


@pytest.mark.parametrize("name", GOOD)
def test_every_level_equals_what_tiffslide_decodes(ingested, name):
    object_id = name.split(".")[0]
    group = zarr.open_group(_store(ingested, object_id), mode="r")
    source = tiffslide.TiffSlide(slide_path(name))
    source_levels = source.level_count
    levels = sorted(group.array_keys(), key=int)
    assert len(levels) >= source_levels
    for index in range(source_levels):
        expected = np.asarray(source.zarr_group[str(index)][:])[..., :3]
        stored = np.moveaxis(group[str(index)][:], 0, 2)
        np.testing.assert_array_equal(stored, expected, err_msg=f"{name} level {index}")
    for index in range(source_levels, len(levels)):
        np.testing.assert_array_equal(group[str(index)][:], halve(group[str(index - 1)][:]))
    assert max(group[levels[-1]].shape[1:]) <= 512, "levels go down to thumbnail size"


def test_halving_is_the_rounded_mean_of_each_2x2_with_edges_repeated():
    block = np.array([[[0, 1, 10], [3, 4, 20], [100, 200, 30]]], dtype=np.uint8)
    halved = halve(block)
    assert halved.tolist() == [[[2, 15], [150, 30]]]


IDENTIFYING = ("CMU-1", "b414003d", "12/29/09", "09:59:15", "CPAPERIOCS", "1004486", "Aperio")


def test_no_label_macro_or_identifying_metadata_is_copied(ingested):
    store = _store(ingested, "cmu-1-small-region")
    group = zarr.open_group(store, mode="r")
    assert sorted(group.keys(), key=int) == [str(i) for i in range(len(list(group.keys())))], (
        "the store holds the pyramid's levels and nothing else"
    )
    for path in store.rglob("*"):
        if path.is_file():
            content = path.read_bytes()
            for value in IDENTIFYING:
                assert value.encode() not in content, f"{value} found in {path}"
    source = tiffslide.TiffSlide(slide_path("cmu-1-small-region.svs"))
    label = np.asarray(source.associated_images["label"])
    for level in group.array_keys():
        assert group[level].shape[1:] != label.shape[:2]

    entry = _manifest(ingested)["objects"]["cmu-1-small-region"]
    removed = entry["deidentification"]
    assert {"label", "macro"} <= set(removed["images_dropped"])
    assert {"aperio.User", "aperio.Filename", "aperio.Date", "aperio.Time"} <= set(
        removed["metadata_dropped"]
    )
    manifest_text = (ingested / DATASET / "dataset.json").read_text()
    for value in IDENTIFYING[1:]:
        assert value not in manifest_text, f"the value {value} is recorded, not only its name"
    assert entry["metadata"] == {
        "vendor": "aperio",
        "objective_power": 20,
        "mpp_x": 0.499,
        "mpp_y": 0.499,
    }


def test_damaged_files_are_named_and_nothing_half_written_is_registered(tmp_path):
    sources = [slide_path(name) for name in (*DAMAGED, "small.svs")]
    lines: list[str] = []
    outcomes = ingest_named_slides(
        sources, DATASET, tmp_path, show_progress=False, report=lines.append
    )
    errors = {o.source.name: o.error for o in outcomes}
    assert errors["small.svs"] is None
    assert "unreadable.svs" in errors["unreadable.svs"] and "decoded" in errors["unreadable.svs"]
    assert "unopenable.tiff" in errors["unopenable.tiff"]
    assert "broken.svs" in errors["broken.svs"] and "not a TIFF" in errors["broken.svs"]
    assert lines[-1] == f"1 slide(s) ingested into {DATASET}, 3 failed"
    assert set(_manifest(tmp_path)["objects"]) == {"small"}
    assert sorted(p.name for p in (tmp_path / DATASET).iterdir()) == [
        ".dataset.lock",
        "dataset.json",
        "persons.parquet",
        "small.ome.zarr",
    ]


def test_a_slide_damaged_deep_inside_fails_midway_and_leaves_nothing(tmp_path):
    """The first tiles decode (the open check passes); a later one does not."""
    damaged = tmp_path / "late-damage.svs"
    shutil.copy(slide_path("cmu-1-small-region.svs"), damaged)
    with tifffile.TiffFile(damaged) as tiff:
        page = tiff.pages[0]
        offset, length = page.dataoffsets[-1], page.databytecounts[-1]
    with damaged.open("r+b") as stream:
        stream.seek(offset)
        stream.write(b"\0" * min(length, 64))  # the last tile no longer starts a JPEG stream
    root = tmp_path / "data"
    outcomes = ingest_named_slides(
        [damaged], DATASET, root, show_progress=False, report=lambda _: 0
    )
    (outcome,) = outcomes
    assert outcome.error and "late-damage.svs" in outcome.error
    assert "conversion failed" in outcome.error
    assert not (root / DATASET).exists(), "no staging folder, no store, no dataset folder"


def test_ingesting_the_same_slide_twice_is_refused_and_keeps_the_first(ingested):
    lines: list[str] = []
    before = _manifest(ingested)
    outcomes = ingest_named_slides(
        [slide_path("small.svs")], DATASET, ingested, show_progress=False, report=lines.append
    )
    assert "already has an object 'small'" in outcomes[0].error
    assert _manifest(ingested) == before


def test_the_command_line_ingests_lists_and_reports_failures(tmp_path):
    enclave = [sys.executable, "-m", "enclave_hub.cli"]
    sources = [slide_path("small.svs"), slide_path("broken.svs")]
    named = ["--manifest", slide_manifest(tmp_path / "in", sources), "--key-file", tmp_path / "key"]
    root = tmp_path / "data"
    ingest = subprocess.run(
        [
            *enclave,
            *("dataset", "ingest", "slides", *sources),
            *("--dataset", "ds-cli", "--data-root", root, *named),
        ],
        capture_output=True,
        text=True,
    )
    assert ingest.returncode == 1, "a failed source makes the command fail"
    assert "FAILED" in ingest.stderr and "broken.svs" in ingest.stderr
    assert "1 slide(s) ingested into ds-cli, 1 failed" in ingest.stdout
    listing = subprocess.run(
        [*enclave, "dataset", "list", "--data-root", root], capture_output=True, text=True
    )
    assert listing.stdout.split() == ["ds-cli", "slides", "1", "objects"]
    bad = subprocess.run(
        [
            *enclave,
            "dataset",
            "ingest",
            "slides",
            str(slide_path("small.svs")),
            *("--dataset", "../escape", "--data-root", root, *named),
        ],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "dataset '../escape' is not valid" in bad.stderr
    assert sorted(p.name for p in root.iterdir()) == ["ds-cli"]


def test_a_slide_the_manifest_does_not_name_is_refused_by_name(tmp_path):
    """Only the named slide goes in; the other is refused, named, and nothing of it is kept;
    without a manifest every slide is refused."""
    named, unnamed = slide_path("small.svs"), slide_path("boxes.tiff")
    lines: list[str] = []
    manifest = SourceManifest(slide_manifest(tmp_path / "in", [named]))
    root = tmp_path / "data"
    outcomes = ingest_slides(
        [named, unnamed], DATASET, root, KEY, manifest, show_progress=False, report=lines.append
    )
    assert outcomes[0].error is None
    assert outcomes[1].error == f"{unnamed}: the manifest {manifest.path} does not name it"
    assert f"FAILED  {unnamed}: the manifest {manifest.path} does not name it" in lines
    objects = json.loads((root / DATASET / "dataset.json").read_text())["objects"]
    assert list(objects) == ["small"]
    assert objects["small"]["attributes"] == {"stain": "H&E"}
    (refused,) = ingest_slides([unnamed], "ds-none", root, KEY, show_progress=False)
    assert "no manifest names its person" in refused.error and str(unnamed) in refused.error
    assert not (root / "ds-none").exists()


@pytest.mark.parametrize("name", ["cmu-1-small-region.svs", "small.svs", "boxes.tiff"])
def test_a_copy_cut_short_anywhere_is_refused_in_one_plain_line(tmp_path, name):
    """Cut at many points, from inside the first directory to the last byte of the label,
    a slide is refused with the reason in one line, and nothing else reaches stderr."""
    whole = slide_path(name).read_bytes()
    cuts = sorted({len(whole) * k // 12 for k in range(1, 12)} | {len(whole) - 1})
    sources = []
    for cut in cuts:
        source = tmp_path / f"cut-{cut}-{name}"
        source.write_bytes(whole[:cut])
        sources.append(source)
    command = [sys.executable, "-m", "enclave_hub.cli", "dataset", "ingest", "slides"]
    named = ["--manifest", slide_manifest(tmp_path, sources), "--key-file", tmp_path / "key"]
    ingest = subprocess.run(
        [*command, *sources, "--dataset", "ds-cut", "--data-root", tmp_path / "data", *named],
        capture_output=True,
        text=True,
    )
    assert ingest.returncode == 1
    lines = ingest.stderr.splitlines()
    assert len(lines) == len(sources), ingest.stderr
    for source, line in zip(sources, lines, strict=True):
        assert line.startswith(f"FAILED  {source}: ") and "cut short" in line, line
        assert "Error" not in line, line
    assert not (tmp_path / "data" / "ds-cut").exists()
