"""Tiles of many slides for training a model: a map-style dataset, as PyTorch's `DataLoader`
takes it, of the tissue tiles of the project's slides, each with the label of the person the
slide belongs to.

    tiles = enclave.tile_dataset(["ds-slides/a", "ds-slides/b"], labels={"ENC...": 1, ...})
    for images, labels in tiles.loader(batch_size=64):  # uint8 (64, 3, 240, 240), labels
        ...

The tiles are those `Slide.tiles` gives: squares of `size` pixels at `level`, covered at least
`min_tissue` by the slide's tissue mask. An item is the tile's pixels, (3, size, size) uint8,
and its label; the loader stacks them into tensors. The dataset holds the slides' references
and the tiles' places only, so every worker process opens the slides for itself; on a level
that keeps the source's JPEG tiles, a tile aligned to them is one JPEG decoded by
libjpeg-turbo. The loader's workers are started afresh, not forked: TensorStore, which reads
the stores, stops a process forked from one that used it.

On a machine with a CUDA device, where every tile is one of the source's JPEG tiles (`size`
their size, on a level that keeps them), the loader's workers only read each tile's JPEG and
the GPU decodes the batch (nvJPEG, through torchvision): batches come on the GPU. The first
batch is checked against libjpeg-turbo's decode; `decode="cpu"` keeps decoding in the workers.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import imagecodecs
import numpy as np

from ..catalog import CatalogError
from .jpeg_tiles import JpegLevel
from .slide import Slide, StorePyramid, open_slide

DECODES = ("auto", "cpu", "gpu")
# The most that the GPU's decode of the first batch may differ from libjpeg-turbo's, as the
# mean absolute difference per pixel value: decoders round differently, but components read
# in the wrong colour space differ by tens.
GPU_DECODE_TOLERANCE = 2.0


class TileDataset:
    """The tissue tiles of `slides` (`dataset-id/object-id` references), each with the label
    `labels` gives the slide's person (their pseudonym, as `enclave.persons()` lists them)."""

    def __init__(
        self,
        slides: Sequence[str],
        labels: Mapping[str, Any],
        size: int = 240,
        level: int = 0,
        min_tissue: float = 0.5,
        root: Path | None = None,
    ):
        self.slides = list(slides)
        self.size, self.level, self.root = size, level, root
        self.labels = _labels_by_slide(self.slides, labels, root)
        places = []
        for number, reference in enumerate(self.slides):
            with open_slide(reference, root) as slide:
                for _, _, top, left, _ in slide.tile_places(size, level, 0, True, min_tissue):
                    places.append((number, top, left))
        self.places = np.array(places, dtype=np.int64).reshape(-1, 3)
        self._opened: dict[int, Slide] = {}

    def __len__(self) -> int:
        return len(self.places)

    def __getitem__(self, index: int) -> tuple[np.ndarray, Any]:
        number, top, left = (int(value) for value in self.places[index])
        slide = self._slide(number)
        pixels = slide.pyramid.read(self.level, top, top + self.size, left, left + self.size)
        return np.ascontiguousarray(pixels.transpose(2, 0, 1)), self.labels[number]

    def loader(
        self,
        batch_size: int = 64,
        shuffle: bool = True,
        workers: int = 2,
        decode: str = "auto",
        **options,
    ):
        """PyTorch's DataLoader over the tiles (see `data_loader`). `decode`: "cpu" in the
        workers; "gpu" on the CUDA device, batches there (`GpuDecodedBatches`); "auto" on the
        GPU where there is one and every tile is one of the source's JPEG tiles."""
        if decode not in DECODES:
            raise ValueError(f"decode {decode!r}: one of {', '.join(DECODES)}")
        unfit = None if decode == "cpu" else self.why_not_gpu_decode()
        if decode == "cpu" or (decode == "auto" and unfit):
            return data_loader(self, batch_size, shuffle, workers, **options)
        if unfit:
            raise ValueError(f"decode 'gpu': {unfit}")
        streams = data_loader(
            JpegStreams(self), batch_size, shuffle, workers, collate_fn=collate_streams, **options
        )
        return GpuDecodedBatches(streams, nvjpeg_decode)

    def why_not_gpu_decode(self) -> str | None:
        """Why the GPU cannot decode these tiles, or None where it can."""
        return gpu_decode_missing() or self.why_not_whole_tiles()

    def why_not_whole_tiles(self) -> str | None:
        """Why an item is not always one stored JPEG tile, or None where it is."""
        for number, reference in enumerate(self.slides):
            pyramid = self._slide(number).pyramid
            reader = pyramid.readers[self.level] if isinstance(pyramid, StorePyramid) else None
            if not isinstance(reader, JpegLevel):
                return f"slide {reference}: level {self.level} keeps no JPEG tiles of its source"
            tiling = reader.tiling
            if (tiling.height, tiling.width) != (self.size, self.size):
                return (
                    f"slide {reference}: its JPEG tiles are {tiling.width}x{tiling.height} "
                    f"pixels, not {self.size}"
                )
        return None

    def jpeg_item(self, index: int) -> tuple[np.ndarray, Any]:
        """Item `index` with its tile as a whole JPEG, uint8 bytes (see `why_not_whole_tiles`);
        a tile the source lacks is a black one, as its pixels are."""
        number, top, left = (int(value) for value in self.places[index])
        reader = self._slide(number).pyramid.readers[self.level]
        stored = reader.whole_tile(top // self.size, left // self.size)
        if stored is None:
            blank = np.zeros((self.size, self.size, 3), np.uint8)
            stored = imagecodecs.jpeg8_encode(blank, level=100)  # decodes to zeros exactly
        return np.frombuffer(stored, np.uint8), self.labels[number]

    def tile_of(self, index: int) -> tuple[str, tuple[int, int]]:
        """Which slide item `index` comes from, and its top-left corner (x, y) in level-0
        pixels."""
        number, top, left = (int(value) for value in self.places[index])
        downsample = self._slide(number).level_downsamples[self.level]
        return self.slides[number], (round(left * downsample), round(top * downsample))

    def _slide(self, number: int) -> Slide:
        """The slide, opened by this process: a worker gets the dataset without the slides
        its parent opened (`__getstate__`) and opens its own."""
        if number not in self._opened:
            self._opened[number] = open_slide(self.slides[number], self.root)
        return self._opened[number]

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_opened": {}}


class JpegStreams:
    """A `TileDataset`'s items as their tiles' whole JPEGs, (uint8 bytes, label)."""

    def __init__(self, tiles: TileDataset):
        self.tiles = tiles

    def __len__(self) -> int:
        return len(self.tiles)

    def __getitem__(self, index: int) -> tuple[np.ndarray, Any]:
        return self.tiles.jpeg_item(index)


def gpu_decode_missing() -> str | None:
    """What this machine lacks to decode tiles on the GPU, or None: a CUDA device, torchvision."""
    import torch

    if not torch.cuda.is_available():
        return "no CUDA device"
    if importlib.util.find_spec("torchvision") is None:
        return "torchvision is not installed (the gpu extra)"
    return None


def collate_streams(items: list[tuple[np.ndarray, Any]]):
    """A batch of JPEGs of different lengths: a list of 1-D uint8 tensors, and the labels."""
    import torch
    from torch.utils.data import default_collate

    streams = [torch.from_numpy(data.copy()) for data, _ in items]
    return streams, default_collate([label for _, label in items])


def nvjpeg_decode(streams: list) -> Any:
    """The batch's JPEGs decoded on the CUDA device by nvJPEG: uint8 (n, 3, height, width)."""
    import torch
    from torchvision.io import ImageReadMode, decode_jpeg

    return torch.stack(decode_jpeg(streams, mode=ImageReadMode.RGB, device="cuda"))


class GpuDecodedBatches:
    """Batches of a DataLoader of `JpegStreams` decoded by `decode` (a list of JPEGs to
    (n, 3, h, w) uint8), with their labels moved to where the pixels are; the first batch's
    pixels are checked against libjpeg-turbo's."""

    def __init__(self, streams, decode: Callable[[list], Any]):
        self.streams, self.decode = streams, decode
        self.checked = False

    def __len__(self) -> int:
        return len(self.streams)

    def __iter__(self):
        for streams, labels in self.streams:
            images = self.decode(streams)
            if not self.checked:
                check_gpu_decode(streams, images)
                self.checked = True
            yield images, labels.to(images.device, non_blocking=True)


def check_gpu_decode(streams: list, images) -> None:
    """Raise where the decode of a batch's first JPEGs is not libjpeg-turbo's, within
    `GPU_DECODE_TOLERANCE`."""
    for number, (stream, image) in enumerate(zip(streams[:4], images, strict=False)):
        expected = imagecodecs.jpeg8_decode(stream.numpy().tobytes()).transpose(2, 0, 1)
        found = image.cpu().numpy()
        if found.shape != expected.shape:
            raise RuntimeError(
                f"the GPU decoded tile {number} of the first batch to {found.shape}, "
                f"libjpeg-turbo to {expected.shape}"
            )
        difference = np.abs(found.astype(np.int16) - expected).mean()
        if difference > GPU_DECODE_TOLERANCE:
            raise RuntimeError(
                f"the GPU's decode of tile {number} of the first batch differs from "
                f"libjpeg-turbo's by {difference:.1f} on average: use decode='cpu'"
            )


def data_loader(dataset, batch_size: int = 64, shuffle: bool = True, workers: int = 2, **options):
    """PyTorch's DataLoader over `dataset`: `workers` processes started afresh and kept from
    one epoch to the next, batches in pinned memory where CUDA is present; `options` go to
    the DataLoader as they are."""
    import torch

    settings = {
        "batch_size": batch_size,
        "shuffle": shuffle,
        "num_workers": workers,
        "pin_memory": torch.cuda.is_available(),
    }
    if workers:
        settings.update(multiprocessing_context="spawn", persistent_workers=True)
    return torch.utils.data.DataLoader(dataset, **{**settings, **options})


def _labels_by_slide(slides: list[str], labels: Mapping[str, Any], root: Path | None) -> list:
    """Each slide's label, through the person the persons index names for it."""
    from ..persons import persons

    index = persons(root)
    owners = {
        f"{row.dataset}/{row.object}": row.person
        for row in index[index["kind"] == "slide"].itertuples()
    }
    found = []
    for reference in slides:
        if reference not in owners:
            raise CatalogError(f"slide {reference}: no person is recorded for it")
        if owners[reference] not in labels:
            raise CatalogError(f"slide {reference}: its person {owners[reference]} has no label")
        found.append(labels[owners[reference]])
    return found
