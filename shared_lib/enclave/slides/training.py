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
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..catalog import CatalogError
from .slide import Slide, open_slide


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

    def loader(self, batch_size: int = 64, shuffle: bool = True, workers: int = 2, **options):
        """PyTorch's DataLoader over the tiles (see `data_loader`)."""
        return data_loader(self, batch_size, shuffle, workers, **options)

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
