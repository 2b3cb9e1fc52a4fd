"""scanpy's standard preprocessing (normalize_total, log1p, highly_variable_genes, scale, PCA)
on a synthetic sparse count matrix, in cells per second with peak memory: Enclave's lazy,
out-of-core pipeline (`open_matrix` then `enclave.matrices.analysis.preprocess`) on the whole
matrix, against in-memory scanpy (defaults) on the largest block of cells it can hold.

How many cells in-memory scanpy can hold is measured, not guessed: a first run on a small block
gives its memory per cell, and the block is as large as fits in `--memory-fraction` of this
machine's memory (at most the whole matrix, at most `--scanpy-max-cells`). Each run is its own
process; its peak memory is its high-water mark. scanpy's time leaves out loading its block.

    .venv/bin/python bench/matrix_pipeline.py [--cells 1000000] [--genes 20000] [--reads 600]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from measure import available_memory, folder_bytes, in_child, main_or_child, peak_rss, report
from synthetic_matrix import write_synthetic

PROBE_CELLS = 20_000


def run_enclave(store: str, n_top_genes: int, n_comps: int) -> dict:
    import enclave
    from enclave.matrices.analysis import preprocess

    began = time.perf_counter()
    adata = enclave.open_matrix(store)
    preprocess(adata, n_top_genes=n_top_genes, n_comps=n_comps)
    return {"seconds": time.perf_counter() - began, "cells": adata.n_obs}


def run_scanpy(store: str, n_top_genes: int, n_comps: int, cells: int) -> dict:
    import anndata as ad
    import scanpy as sc
    import zarr

    group = zarr.open_group(store, mode="r")
    before = peak_rss()
    loading = time.perf_counter()
    adata = ad.AnnData(ad.io.sparse_dataset(group["X"])[:cells])
    loaded = time.perf_counter()
    sc.pp.normalize_total(adata, target_sum=1e4)
    sc.pp.log1p(adata)
    sc.pp.highly_variable_genes(adata, n_top_genes=n_top_genes)
    adata = adata[:, adata.var.highly_variable].copy()
    sc.pp.scale(adata)
    sc.pp.pca(adata, n_comps=n_comps)
    return {
        "seconds": time.perf_counter() - loaded,
        "loading": loaded - loading,
        "cells": cells,
        "before": before,
    }


def child(kind: str, store: str, n_top_genes: str, n_comps: str, cells: str) -> None:
    import warnings

    warnings.simplefilter("ignore")
    if kind == "enclave":
        report(run_enclave(store, int(n_top_genes), int(n_comps)))
    else:
        report(run_scanpy(store, int(n_top_genes), int(n_comps), int(cells)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cells", type=int, default=1_000_000)
    parser.add_argument("--genes", type=int, default=20_000)
    parser.add_argument("--reads", type=int, default=600, help="mean counts per cell")
    parser.add_argument("--n-top-genes", type=int, default=2000)
    parser.add_argument("--n-comps", type=int, default=50)
    parser.add_argument("--memory-fraction", type=float, default=0.6)
    parser.add_argument("--scanpy-max-cells", type=int, default=200_000)
    parser.add_argument("--scratch", type=Path, default=None, help="where to write the matrix")
    args = parser.parse_args()
    options = (str(args.n_top_genes), str(args.n_comps))

    with tempfile.TemporaryDirectory(dir=args.scratch) as scratch:
        store = str(Path(scratch) / "cells.zarr")
        began = time.perf_counter()
        write_synthetic(Path(store), args.cells, args.genes, args.reads)
        import zarr

        nnz = int(zarr.open_group(store, mode="r")["X/indptr"][-1])
        print(
            f"Matrix: {args.cells:,} cells x {args.genes:,} genes, {nnz:,} stored values "
            f"({nnz / args.cells:.0f} genes detected per cell; {nnz * 8 / 2**30:.2f} GiB as CSR "
            f"in memory, {folder_bytes(store) / 2**30:.2f} GiB stored), written in "
            f"{time.perf_counter() - began:.0f} s"
        )
        print(
            f"Pipeline: normalize_total, log1p, {args.n_top_genes} HVGs, scale, "
            f"{args.n_comps} PCs\n"
        )

        probe, probe_peak = in_child(__file__, "scanpy", store, *options, str(PROBE_CELLS))
        per_cell = max(1, (probe_peak - probe["before"]) // PROBE_CELLS)
        budget = int(available_memory() * args.memory_fraction) - probe["before"]
        held = min(args.cells, args.scanpy_max_cells, budget // per_cell)
        scanpy, scanpy_peak = in_child(__file__, "scanpy", store, *options, str(held))
        ours, our_peak = in_child(__file__, "enclave", store, *options, "0")

        rows = [
            ("Enclave, out of core", ours["cells"], ours["seconds"], our_peak),
            ("scanpy, in memory", held, scanpy["seconds"], scanpy_peak),
        ]
        print(f"{'run':<22} {'cells':>10} {'seconds':>8} {'cells/s':>9} {'peak RSS':>10}")
        for name, cells, seconds, peak in rows:
            print(
                f"{name:<22} {cells:>10,} {seconds:>8.1f} {cells / seconds:>9,.0f} "
                f"{peak / 2**30:>6.2f} GiB"
            )
        speed = (ours["cells"] / ours["seconds"]) / (held / scanpy["seconds"])
        print(
            f"\nEnclave / scanpy: {speed:.2f}x the cells per second, "
            f"{our_peak / scanpy_peak:.2f} of the peak memory on "
            f"{ours['cells'] / held:.1f}x the cells. scanpy's memory per cell, measured on "
            f"{PROBE_CELLS:,} cells: {per_cell / 1024:.1f} KiB (held {held:,} cells; "
            f"loading them took {scanpy['loading']:.1f} s more)."
        )


if __name__ == "__main__":
    main_or_child(main, child)
