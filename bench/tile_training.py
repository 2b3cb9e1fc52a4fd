"""Tiles into a training loop: `enclave.tile_dataset` on Enclave's stores of many slides against
a dataset built on tiffslide over the same slides' source files, each read by PyTorch's
DataLoader into the same loop, side by side in one run.

The slides: one synthetic JPEG pyramid (`synthetic_slide.py`: 256-pixel tiles, quality 80,
tissue-like texture with glass around it), written once into the cache folder and copied
`--slides` times, each copy a different patient's; Enclave ingests them (copying the JPEG
tiles) with a manifest, and a person's label is 0 or 1. Both datasets give the same items in
the same order: the 256-pixel tissue tiles at level 0 that `tile_dataset` lists, (3, 256, 256)
uint8, with the label. The loader, the same for both (`enclave.slides.training.data_loader`):
batches of 64, shuffled, 2 worker processes started afresh, pinned memory where CUDA is
present. The loop moves each batch to the GPU where there is one, makes it float, scales it
and takes its mean (a stand-in for a model's step, light enough that reading and decoding are
the limit). Where a CUDA device and torchvision are present, a third side: Enclave's loader
with the GPU decoding each batch (nvJPEG), its workers only reading the JPEGs. Tiles per
second from the second batch to the end of `--epochs` epochs; peak memory of the process tree
(loop and workers). Listing the tiles (each slide's tissue mask) is timed apart.

    .venv/bin/python bench/tile_training.py [--slides 8] [--side 8192] [--epochs 1]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from measure import folder_bytes, main_or_child, report, run_measured
from synthetic_slide import write_slide

TILE, BATCH, WORKERS = 256, 64, 2
SIDES = {
    "enclave": "Enclave tile_dataset",
    "tiffslide": "tiffslide Dataset",
    "enclave-gpu": "Enclave, GPU decode",
}
KEY = b"bench-key-" * 4


class TiffslideTiles:
    """The baseline: the same tiles read from the source files by tiffslide, each worker
    process opening the files for itself (the loader's workers start afresh, with the
    dataset as the parent had it: nothing opened)."""

    def __init__(self, places: list[tuple[str, int, int, int]]):
        self.places = places
        self._opened: dict[str, object] = {}

    def __len__(self) -> int:
        return len(self.places)

    def __getitem__(self, index: int):
        import tiffslide

        path, x, y, label = self.places[index]
        if path not in self._opened:
            self._opened[path] = tiffslide.TiffSlide(path)
        region = self._opened[path].read_region((x, y), 0, (TILE, TILE), as_array=True)
        return np.ascontiguousarray(region[..., :3].transpose(2, 0, 1)), label


def train(loader, epochs: int) -> dict:
    """The loop over the loader's batches: tiles per second after the first batch."""
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    began, seen, total = None, 0, 0.0
    for _ in range(epochs):
        for images, labels in loader:
            if began is None:  # the workers' start and first batch
                began = time.perf_counter()
                continue
            images, labels = images.to(device, non_blocking=True), labels.to(device)
            total += float(images.float().div_(255).mean()) + float(labels.float().mean())
            seen += len(images)
    seconds = time.perf_counter() - began
    return {"tiles": seen, "seconds": seconds, "per_second": seen / seconds}


def child(which: str, plan_path: str) -> None:
    import torch

    from enclave.slides.training import data_loader

    plan = json.loads(Path(plan_path).read_text())
    torch.manual_seed(0)
    if which == "tiffslide":
        dataset, listing = TiffslideTiles([tuple(p) for p in plan["places"]]), 0.0
        loader = data_loader(dataset, BATCH, shuffle=True, workers=WORKERS)
    else:
        import enclave

        began = time.perf_counter()
        dataset = enclave.tile_dataset(
            plan["references"], plan["labels"], size=TILE, root=Path(plan["root"])
        )
        listing = time.perf_counter() - began
        decode = "gpu" if which == "enclave-gpu" else "cpu"
        loader = dataset.loader(BATCH, shuffle=True, workers=WORKERS, decode=decode)
    report({**train(loader, plan["epochs"]), "listing": listing, "items": len(dataset)})


def prepare(cache: Path, slides: int, side: int, scratch: Path) -> dict:
    """The slides written (once, cached), copied and ingested; what the children need."""
    from enclave.persons import SourceManifest
    from enclave.slides.ingest import ingest_slides

    cache.mkdir(parents=True, exist_ok=True)
    original = cache / f"synthetic-{side}.tiff"
    if not original.exists():
        write_slide(original.with_suffix(".part"), side, side)
        original.with_suffix(".part").rename(original)
    sources = []
    for number in range(slides):
        sources.append(scratch / f"slide-{number}.tiff")
        shutil.copyfile(original, sources[-1])
    manifest = scratch / "manifest.csv"
    manifest.write_text(
        "source,patient_id\n" + "".join(f"{s.name},patient-{n}\n" for n, s in enumerate(sources))
    )
    root = scratch / "data"
    outcomes = ingest_slides(
        sources, "bench", root, KEY, SourceManifest(manifest), 2, False, report=lambda _: None
    )
    if any(outcome.error for outcome in outcomes):
        raise SystemExit("; ".join(o.error for o in outcomes if o.error))
    references = [f"bench/{outcome.object_id}" for outcome in outcomes]
    import enclave

    index = enclave.persons(root)
    people = [index[index["object"] == r.split("/")[1]]["person"].item() for r in references]
    labels = {person: number % 2 for number, person in enumerate(people)}
    dataset = enclave.tile_dataset(references, labels, size=TILE, root=root)
    places = []
    for item in range(len(dataset)):
        reference, (x, y) = dataset.tile_of(item)
        number = references.index(reference)
        places.append((str(sources[number]), x, y, labels[people[number]]))
    return {
        "root": str(root),
        "references": references,
        "labels": labels,
        "places": places,
        "source_bytes": sum(folder_bytes(s) for s in sources),
        "store_bytes": folder_bytes(root / "bench"),
    }


def main() -> None:
    from enclave.slides.training import gpu_decode_missing

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--slides", type=int, default=8)
    parser.add_argument("--side", type=int, default=8192, help="level-0 pixels a side")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument(
        "--cache",
        type=Path,
        default=Path(os.environ.get("BENCH_DIR", tempfile.gettempdir())) / "enclave-bench-tiles",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as scratch:
        scratch = Path(scratch)
        plan = {**prepare(args.cache, args.slides, args.side, scratch), "epochs": args.epochs}
        plan_path = scratch / "plan.json"
        plan_path.write_text(json.dumps(plan))
        print(
            f"{args.slides} slides of {args.side}x{args.side} pixels, {len(plan['places']):,} "
            f"tissue tiles of {TILE} pixels; sources {plan['source_bytes'] / 2**20:,.0f} MiB, "
            f"Enclave's stores {plan['store_bytes'] / 2**20:,.0f} MiB; batches of {BATCH}, "
            f"{WORKERS} workers, {args.epochs} epoch(s)\n",
            flush=True,
        )
        results = {}
        gpu_missing = gpu_decode_missing()
        for name in ("enclave", "tiffslide") if gpu_missing else SIDES:
            log = scratch / f"{name}.json"
            with log.open("w") as stdout:
                _, peak = run_measured(
                    [sys.executable, __file__, "--child", name, str(plan_path)], stdout=stdout
                )
            results[name] = {**json.loads(log.read_text().splitlines()[-1]), "peak": peak}
    ours, theirs = results["enclave"], results["tiffslide"]
    assert ours["items"] == theirs["items"] == len(plan["places"])
    print(f"{'':24}{'tiles/s':>9}{'seconds':>9}{'peak MiB':>10}")
    for name, result in results.items():
        print(
            f"{SIDES[name]:24}{result['per_second']:>9,.0f}{result['seconds']:>9.1f}"
            f"{result['peak'] / 2**20:>10,.0f}"
        )
    print(
        f"\nEnclave / tiffslide: {ours['per_second'] / theirs['per_second']:.2f}x the tiles per "
        f"second; listing the tissue tiles of {args.slides} slides: {ours['listing']:.1f} s"
    )
    if "enclave-gpu" in results:
        gpu = results["enclave-gpu"]
        assert gpu["items"] == theirs["items"]
        print(
            f"Enclave with GPU decode / tiffslide: {gpu['per_second'] / theirs['per_second']:.2f}x;"
            f" / Enclave decoding in the workers: {gpu['per_second'] / ours['per_second']:.2f}x"
        )
    else:
        print(f"GPU decode: not measured here ({gpu_missing})")


if __name__ == "__main__":
    main_or_child(main, child)
