"""A synthetic pyramidal slide for the slide benchmarks: tissue-like texture, JPEG tiles.

Levels 1, 1/4 and 1/16, 256-pixel JPEG tiles (quality 80), one BigTIFF page per level (the
generic pyramidal TIFF that OpenSlide and tiffslide both read), 0.25 µm per pixel: what a
scanner writes, give or take the vendor's tags. The texture is a blocky tissue map (white
glass around pink and purple stain) with fine grain, so that both JPEG and lossless codecs
see content of a slide's character.
"""

from __future__ import annotations

import numpy as np
import tifffile

TILE = 256
MPP = 0.25
DOWNSAMPLES = (1, 4, 16)
GLASS = np.array([242, 240, 245], np.float32)
STAIN = np.array([[196, 120, 170], [120, 70, 150], [225, 160, 190]], np.float32)


class TissueField:
    """A deterministic tissue map over the whole slide (64 x 64 cells), sampled at any level."""

    CELLS = 64

    def __init__(self, height: int, width: int, seed: int = 7):
        rng = np.random.default_rng(seed)
        self.height, self.width = height, width
        coarse = rng.random((self.CELLS, self.CELLS))
        for _ in range(3):  # smooth blobs
            coarse = (
                coarse
                + np.roll(coarse, 1, 0)
                + np.roll(coarse, 1, 1)
                + np.roll(coarse, -1, 0)
                + np.roll(coarse, -1, 1)
            ) / 5
        coarse = (coarse - coarse.min()) / (coarse.max() - coarse.min())
        tissue = np.clip((coarse - 0.45) * 6, 0, 1)[..., None]
        stain = STAIN[rng.integers(0, len(STAIN), coarse.shape)]
        self.colors = (GLASS * (1 - tissue) + stain * tissue).astype(np.int16)
        self.amount = (tissue[..., 0] * 64).astype(np.int16)
        self.grain = rng.normal(0, 18, (16, TILE, TILE)).astype(np.int16)
        self.rng = rng

    def tile(self, level_y: int, level_x: int, downsample: int) -> np.ndarray:
        """The TILE x TILE RGB pixels at a level's (y, x), uint8."""
        cells = self.CELLS - 1
        iy = np.minimum((level_y + np.arange(TILE)) * downsample * cells // self.height, cells)
        ix = np.minimum((level_x + np.arange(TILE)) * downsample * cells // self.width, cells)
        base = self.colors[iy][:, ix]
        grain = (self.grain[self.rng.integers(len(self.grain))] * self.amount[iy][:, ix]) >> 6
        return np.clip(base + grain[..., None], 0, 255).astype(np.uint8)


def write_slide(path, height: int, width: int, workers: int = 2) -> None:
    field = TissueField(height, width)
    shapes = [(-(-height // d), -(-width // d)) for d in DOWNSAMPLES]

    def tiles(shape, downsample):
        for y in range(0, shape[0], TILE):
            for x in range(0, shape[1], TILE):
                yield field.tile(y, x, downsample)

    pixels_per_cm = 1e4 / MPP
    with tifffile.TiffWriter(path, bigtiff=True) as tiff:
        for index, (shape, downsample) in enumerate(zip(shapes, DOWNSAMPLES, strict=True)):
            tiff.write(
                tiles(shape, downsample),
                shape=(*shape, 3),
                dtype=np.uint8,
                tile=(TILE, TILE),
                photometric="rgb",
                compression="jpeg",
                compressionargs={"level": 80},
                subfiletype=1 if index else 0,
                resolution=(pixels_per_cm / downsample, pixels_per_cm / downsample),
                resolutionunit="CENTIMETER",
                maxworkers=workers,
            )


def ingest_bench_slide(source, root, workers: int = 2):
    """`enclave dataset ingest slides` of `source` into dataset `bench` under `root`, with a
    manifest naming it as one patient's (a bench key): the store's path."""
    from pathlib import Path

    from enclave.persons import SourceManifest
    from enclave.slides.ingest import STORE_SUFFIX, ingest_slides

    manifest = Path(root) / "bench-manifest.csv"
    manifest.write_text(f"source,patient_id\n{Path(source).name},bench-patient\n")
    key = b"bench-key-" * 4
    (outcome,) = ingest_slides(
        [source], "bench", Path(root), key, SourceManifest(manifest), workers, show_progress=False
    )
    if outcome.error:
        raise SystemExit(outcome.error)
    return Path(root) / "bench" / f"{outcome.object_id}{STORE_SUFFIX}"
