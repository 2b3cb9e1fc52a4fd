"""Random 512 x 512 region reads per second at levels 0 and 1: Enclave on the converted
OME-Zarr store against tiffslide and OpenSlide on the source slide, side by side.

The source is a synthetic pyramidal slide (JPEG tiles, levels 1, 1/4, 1/16; see
synthetic_slide.py) converted with `enclave dataset ingest slides`. Each reader runs in its own
process (so its peak memory is its own), makes the same reads at the same random places, and
returns PIL images as each library's `read_region` does by default.

    .venv/bin/python bench/slide_regions.py [--size 20000] [--reads 400]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from measure import folder_bytes, in_child, main_or_child, report
from synthetic_slide import ingest_bench_slide, write_slide

REGION = 512
READERS = ("enclave", "tiffslide", "openslide")


def open_reader(reader: str, path: str):
    if reader == "enclave":
        import enclave

        return enclave.open_slide(Path(path))
    if reader == "tiffslide":
        import tiffslide

        return tiffslide.TiffSlide(path)
    import openslide

    return openslide.OpenSlide(path)


def child(reader: str, path: str, level_text: str, reads_text: str) -> None:
    level, reads = int(level_text), int(reads_text)
    slide = open_reader(reader, path)
    width, height = slide.level_dimensions[0]
    downsample = slide.level_downsamples[level]
    rng = np.random.default_rng(level)
    span_x, span_y = width - int(REGION * downsample), height - int(REGION * downsample)
    places = [(int(rng.integers(span_x)), int(rng.integers(span_y))) for _ in range(reads)]
    for place in places[:10]:  # open files, warm the code paths
        slide.read_region(place, level, (REGION, REGION))
    began = time.perf_counter()
    for place in places:
        slide.read_region(place, level, (REGION, REGION))
    elapsed = time.perf_counter() - began
    report({"reads_per_s": reads / elapsed})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=20000, help="slide side in pixels")
    parser.add_argument("--reads", type=int, default=400)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        source = Path(folder) / "synthetic.tiff"
        print(f"Writing a {args.size} x {args.size} synthetic slide...", flush=True)
        write_slide(source, args.size, args.size)
        began = time.perf_counter()
        store = ingest_bench_slide(source, folder)
        converted = time.perf_counter() - began
        sizes = {"source": folder_bytes(source), "store": folder_bytes(store)}
        paths = {"enclave": str(store), "tiffslide": str(source), "openslide": str(source)}
        print(
            f"\nSlide {args.size} x {args.size} px RGB ({args.size**2 * 3 / 2**30:.2f} GiB raw); "
            f"source (JPEG q80) {sizes['source'] / 2**20:.0f} MiB, Enclave store "
            f"{sizes['store'] / 2**20:.0f} MiB: {sizes['store'] / sizes['source']:.2f}x the source "
            f"(ingested in {converted:.1f} s)"
        )
        print(f"{args.reads} random {REGION} x {REGION} reads per level, one process per reader\n")
        print(f"{'level':>5}  {'reader':<10} {'reads/s':>9} {'peak RSS':>9}  ratio (Enclave / it)")
        for level in (0, 1):
            rates = {}
            for reader in READERS:
                result, peak = in_child(
                    __file__, reader, paths[reader], str(level), str(args.reads)
                )
                rates[reader] = result["reads_per_s"]
                ratio = "" if reader == "enclave" else f"{rates['enclave'] / rates[reader]:.2f}x"
                print(
                    f"{level:>5}  {reader:<10} {rates[reader]:>9.1f} "
                    f"{peak / 2**20:>6.0f} MiB  {ratio}",
                    flush=True,
                )


if __name__ == "__main__":
    main_or_child(main, child)
