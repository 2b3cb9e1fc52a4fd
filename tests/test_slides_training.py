"""`enclave.tile_dataset`: the tissue tiles of several slides, each labelled through the person
the slide belongs to, read by PyTorch's DataLoader in worker processes; every tile's pixels are
those tiffslide decodes from the source. Batches decoded on the GPU: each tile a JPEG that
decodes alone, the batch's decode checked, and nvJPEG itself where a GPU is lent."""

from __future__ import annotations

import importlib.util
import io
import os
import shutil

import imagecodecs
import numpy as np
import pytest
import tifffile
import tiffslide
import torch
from PIL import Image

import enclave
from enclave.catalog import CatalogError
from enclave.persons import SourceManifest
from enclave.slides import training
from enclave.slides.ingest import ingest_slides
from enclave.slides.jpeg_tiles import copyable
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
    images, labels = zip(*tiles.loader(batch_size=8, shuffle=False, decode="cpu"), strict=True)
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


def _ycbcr_slide(folder) -> str:
    """A slide whose JPEG tiles are YCbCr, chroma halved, as most scanners but Aperio write."""
    rng = np.random.default_rng(7)
    pixels = (rng.random((512, 512, 3)) * 255).astype(np.uint8)
    path = str(folder / "ycbcr.tiff")
    tifffile.imwrite(path, pixels, tile=(256, 256), photometric="ycbcr", compression="jpeg")
    return path


@pytest.mark.parametrize("source", ["cmu", "ycbcr"])
def test_every_stored_tile_is_a_jpeg_that_decodes_alone_to_its_pixels(source, tmp_path):
    """What the GPU is given: Aperio's tiles (RGB components, tables kept apart) and YCbCr
    tiles, each made whole, decode with no tables or colour space given (Pillow's libjpeg)
    to exactly the pixels of the tile as the slide's own settings decode it."""
    path = slide_path("cmu-1-small-region.svs") if source == "cmu" else _ycbcr_slide(tmp_path)
    page = tifffile.TiffFile(path).pages[0]
    descriptor = os.open(path, os.O_RDONLY)
    try:
        tiling = copyable(page, descriptor)
        assert tiling is not None
        for offset, count in zip(page.dataoffsets, page.databytecounts, strict=True):
            stored = os.pread(descriptor, count, offset)
            alone = np.asarray(Image.open(io.BytesIO(tiling.whole(stored))))
            np.testing.assert_array_equal(alone, tiling.decode(stored))
    finally:
        os.close(descriptor)


def test_a_stored_tile_that_is_not_a_jpeg_is_named(slides):
    root, references, _, persons = slides
    tiles = enclave.tile_dataset(references, {persons[0]: 0, persons[1]: 1}, root=root)
    reader = tiles._slide(0).pyramid.readers[0]
    chunk = reader.folder / "0" / "0" / "0"
    kept = chunk.read_bytes()
    chunk.write_bytes(b"not a jpeg")
    try:
        with pytest.raises(ValueError, match=f"^{chunk}: a JPEG tile must start with"):
            reader.whole_tile(0, 0)
    finally:
        chunk.write_bytes(kept)


def _libjpeg_standing_in_for_nvjpeg(streams: list) -> torch.Tensor:
    """The batch decoded by libjpeg-turbo from the whole JPEGs alone, as nvJPEG is given
    them: this machine has no GPU."""
    decoded = [imagecodecs.jpeg8_decode(stream.numpy().tobytes()) for stream in streams]
    return torch.from_numpy(np.stack(decoded).transpose(0, 3, 1, 2).copy())


def test_batches_decoded_at_once_from_the_workers_jpegs_give_every_tiles_pixels(
    slides, monkeypatch
):
    """The GPU path up to the GPU, which this machine lacks: worker processes read each
    tile's JPEG, the loader decodes each batch at once (libjpeg-turbo standing in for nvJPEG)
    and checks the first; every tile and label equals the dataset's own."""
    root, references, _, persons = slides
    tiles = enclave.tile_dataset(references, {persons[0]: 0, persons[1]: 1}, root=root)
    assert tiles.why_not_whole_tiles() is None
    monkeypatch.setattr(training, "nvjpeg_decode", _libjpeg_standing_in_for_nvjpeg)
    monkeypatch.setattr(training.TileDataset, "why_not_gpu_decode", lambda self: None)
    loader = tiles.loader(batch_size=8, shuffle=False, decode="gpu")
    assert isinstance(loader, training.GpuDecodedBatches)
    images, labels = zip(*loader, strict=True)
    images, labels = torch.cat(images), torch.cat(labels)
    assert images.shape == (len(tiles), 3, 240, 240) and images.dtype == torch.uint8
    for index in range(0, len(tiles), 3):
        pixels, label = tiles[index]
        assert torch.equal(images[index], torch.from_numpy(pixels)) and labels[index] == label


def test_a_decode_in_the_wrong_colours_is_refused_at_the_first_batch(slides, monkeypatch):
    root, references, _, persons = slides
    tiles = enclave.tile_dataset(references, {persons[0]: 0, persons[1]: 1}, root=root)
    monkeypatch.setattr(training.TileDataset, "why_not_gpu_decode", lambda self: None)
    monkeypatch.setattr(
        training, "nvjpeg_decode", lambda s: _libjpeg_standing_in_for_nvjpeg(s).flip(1)
    )  # blue for red: what reading RGB components as YCbCr, or the reverse, looks like
    with pytest.raises(RuntimeError, match=r"differs from libjpeg-turbo's by .* decode='cpu'"):
        next(iter(tiles.loader(batch_size=4, shuffle=False, workers=0, decode="gpu")))


def test_where_the_gpu_cannot_decode_it_is_said_and_auto_decodes_in_the_workers(slides):
    root, references, _, persons = slides
    labels = {persons[0]: 0, persons[1]: 1}
    smaller = enclave.tile_dataset(references, labels, size=200, root=root)
    assert smaller.why_not_whole_tiles() == (
        f"slide {references[0]}: its JPEG tiles are 240x240 pixels, not 200"
    )
    source = enclave.tile_dataset(references, labels, root=root)
    source._opened[0] = enclave.open_slide(slide_path("cmu-1-small-region.svs"))
    assert "level 0 keeps no JPEG tiles of its source" in source.why_not_whole_tiles()
    with pytest.raises(ValueError, match="decode 'fast': one of auto, cpu, gpu"):
        smaller.loader(decode="fast")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="decode 'gpu': no CUDA device"):
            smaller.loader(decode="gpu")
        images, _ = next(iter(smaller.loader(batch_size=2, shuffle=False, workers=0)))
        assert images.device.type == "cpu"
        assert torch.equal(images[0], torch.from_numpy(smaller[0][0]))


def test_nvjpeg_decodes_the_batches_on_a_lent_gpu(slides):
    """nvJPEG itself, through torchvision: run where a GPU is lent, skipped elsewhere."""
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device here: the GPU decode of tiles runs where a GPU is lent")
    if importlib.util.find_spec("torchvision") is None:
        pytest.skip("torchvision is not installed: the gpu extra brings it")
    root, references, _, persons = slides
    tiles = enclave.tile_dataset(references, {persons[0]: 0, persons[1]: 1}, root=root)
    loader = tiles.loader(batch_size=16, shuffle=False)
    assert isinstance(loader, training.GpuDecodedBatches), "auto decodes on the GPU"
    images, labels = zip(*loader, strict=True)
    images = torch.cat(images)
    assert images.device.type == "cuda" and images.shape == (len(tiles), 3, 240, 240)
    assert torch.cat(labels).device.type == "cuda"
    for index in range(0, len(tiles), 5):
        expected = torch.from_numpy(tiles[index][0]).float()
        assert (images[index].cpu().float() - expected).abs().mean() <= 2.0
