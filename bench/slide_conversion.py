"""Converting a 50,000 x 50,000 synthetic pyramidal slide: megapixels per second and peak RSS.

Enclave's `ingest slides` (every source level's JPEG tiles copied as they are, levels added
down to thumbnail size, source checksummed, registered in dataset.json) against what one would
otherwise write by hand: dask reading tiffslide's zarr view of each source level and storing
it into a sharded zarr array with the same codec (no added levels, no metadata). Each runs in
its own process; throughput counts level-0 pixels.

    .venv/bin/python bench/slide_conversion.py [--size 50000] [--workers 2]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from measure import folder_bytes, in_child, main_or_child, report
from synthetic_slide import ingest_bench_slide, write_slide


def convert_with_enclave(source: Path, target: Path, workers: int) -> None:
    ingest_bench_slide(source, target, workers)


def convert_with_dask(source: Path, target: Path, workers: int) -> None:
    import dask
    import dask.array as da
    import tiffslide
    import zarr

    from enclave.slides.convert import SHARD, codec

    slide = tiffslide.TiffSlide(source)
    root = zarr.open_group(target / "dask.zarr", mode="w", zarr_format=3)
    with dask.config.set(scheduler="threads", num_workers=workers):
        for level in range(slide.level_count):
            pixels = da.from_zarr(slide.zarr_group[str(level)], chunks=(SHARD, SHARD, 3))
            pixels = pixels.transpose(2, 0, 1)
            array = root.create_array(
                str(level),
                shape=pixels.shape,
                dtype="uint8",
                chunks=(3, 256, 256),
                shards=(3, SHARD, SHARD),
                compressors=codec(),
            )
            da.store(pixels, array, lock=False)


def child(tool: str, source: str, target: str, workers: str) -> None:
    began = time.perf_counter()
    convert = convert_with_enclave if tool == "enclave" else convert_with_dask
    convert(Path(source), Path(target), int(workers))
    report({"seconds": time.perf_counter() - began})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=50000, help="slide side in pixels")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    megapixels = args.size**2 / 1e6
    with tempfile.TemporaryDirectory() as folder:
        source = Path(folder) / "synthetic.tiff"
        print(f"Writing a {args.size} x {args.size} synthetic slide...", flush=True)
        write_slide(source, args.size, args.size, args.workers)
        print(
            f"Source: {megapixels:,.0f} megapixels at level 0 ({args.size**2 * 3 / 2**30:.1f} GiB "
            f"raw RGB), 3 levels, JPEG tiles: {folder_bytes(source) / 2**30:.2f} GiB on disk; "
            f"{args.workers} workers\n"
        )
        print(f"{'tool':<8} {'seconds':>8} {'Mpx/s':>7} {'peak RSS':>10} {'output':>10}")
        rates = {}
        for tool in ("enclave", "dask"):
            target = Path(folder) / tool
            target.mkdir()
            result, peak = in_child(__file__, tool, str(source), str(target), str(args.workers))
            rates[tool] = megapixels / result["seconds"]
            print(
                f"{tool:<8} {result['seconds']:>8.1f} {rates[tool]:>7.1f} "
                f"{peak / 2**20:>6.0f} MiB {folder_bytes(target) / 2**30:>6.2f} GiB",
                flush=True,
            )
        print(f"\nEnclave / dask throughput: {rates['enclave'] / rates['dask']:.2f}x")


if __name__ == "__main__":
    main_or_child(main, child)
