"""`enclave.tile_dataset`: the tissue tiles of several slides, each labelled through the person
the slide belongs to, read by PyTorch's DataLoader in worker processes; every tile's pixels are
those tiffslide decodes from the source."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import tiffslide
import torch

import enclave
from enclave.catalog import CatalogError
from enclave.persons import SourceManifest
from enclave.slides.ingest import ingest_slides
from slide_data import KEY, slide_path

PATIENTS = {"a.svs": "P-A", "b.svs": "P-B"}


@pytest.fixture(scope="module")
def slides(tmp_path_factory):
    """The CMU slide ingested twice, as two patients' slides; their references, sources and
    the pseudonyms of their persons."""
    folder = tmp_path_factory.mktemp("training")
    sources = []
    for name in PATIENTS:
        shutil.copyfile(slide_path("cmu-1-small-region.svs"), folder / name)
        sources.append(folder / name)
    manifest = folder / "manifest.csv"
    manifest.write_text("source,patient_id\n" + "".join(f"{n},{p}\n" for n, p in PATIENTS.items()))
    root = folder / "data"
    outcomes = ingest_slides(sources, "ds", root, KEY, SourceManifest(manifest), 2, False)
    assert all(outcome.error is None for outcome in outcomes), outcomes
    references = [f"ds/{outcome.object_id}" for outcome in outcomes]
    index = enclave.persons(root)
    persons = [index[index["object"] == r.split("/")[1]]["person"].item() for r in references]
    return root, references, dict(zip(references, sources, strict=True)), persons


def test_every_tissue_tile_of_every_slide_with_its_persons_label(slides):
    root, references, sources, persons = slides
    labels = {persons[0]: 0, persons[1]: 1}
    tiles = enclave.tile_dataset(references, labels, size=240, root=root)

    with enclave.open_slide(references[0], root) as slide:
        expected = sum(1 for _ in slide.tile_places(240, 0, 0, True, 0.5))
    assert 0 < expected < 12 * 9, "the tissue mask leaves out the glass"
    assert len(tiles) == 2 * expected
    for index in range(0, len(tiles), 7):
        pixels, label = tiles[index]
        reference, (x, y) = tiles.tile_of(index)
        assert label == references.index(reference)
        with tiffslide.TiffSlide(sources[reference]) as source:
            region = np.asarray(source.read_region((x, y), 0, (240, 240)).convert("RGB"))
        assert pixels.shape == (3, 240, 240) and pixels.dtype == np.uint8
        np.testing.assert_array_equal(pixels.transpose(1, 2, 0), region)


def test_a_dataloaders_worker_processes_give_the_same_tiles(slides):
    root, references, _, persons = slides
    tiles = enclave.tile_dataset(references, {persons[0]: 0, persons[1]: 1}, root=root)
    tiles[0]  # opened in this process first: the workers open their own
    images, labels = zip(*tiles.loader(batch_size=8, shuffle=False), strict=True)
    images, labels = torch.cat(images), torch.cat(labels)
    assert images.shape == (len(tiles), 3, 240, 240) and images.dtype == torch.uint8
    for index in range(0, len(tiles), 5):
        pixels, label = tiles[index]
        assert torch.equal(images[index], torch.from_numpy(pixels)) and labels[index] == label


def test_a_slide_whose_person_has_no_label_is_named(slides):
    root, references, _, persons = slides
    with pytest.raises(CatalogError, match=f"slide {references[1]}: its person .* no label"):
        enclave.tile_dataset(references, {persons[0]: 0}, root=root)
    with pytest.raises(CatalogError, match="slide ds/nothing-here"):
        enclave.tile_dataset(["ds/nothing-here"], {}, root=root)
