"""A genomic matrix as AnnData's Zarr format (v3), written a block of rows at a time.

Sparse matrices are CSR, their data and indices cut into chunks of 2^20 entries; dense ones
are cut into chunks of whole rows of about 4 MiB. Either way a block of cells is a contiguous
read. Values are compressed with bit-shuffled LZ4 (lossless). Everything but the matrices
(obs, var, obsm, varm, obsp, varp, uns, raw var) is written by anndata itself.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import anndata as ad
import zarr
from scipy import sparse
from zarr.codecs import BloscCodec

from .sources import MatrixSource, RowBlocks

ENTRIES_PER_CHUNK = 1 << 20
DENSE_CHUNK_BYTES = 4 << 20
ROWS_PER_BLOCK_ENTRIES = 1 << 23  # entries per block of rows while converting
COMPRESSOR = BloscCodec(cname="lz4", clevel=5, shuffle="bitshuffle")


def write_anndata(
    target: Path, source: MatrixSource, progress: Callable[[int], object] = lambda _: None
) -> dict:
    """Write `source` as a new AnnData store at `target`; what dataset.json should say.
    `progress` is told how many rows of each matrix were written as they are."""
    with ad.settings.override(zarr_write_format=3, auto_shard_zarr_v3=False):
        return _write(target, source, progress)


def _write(target: Path, source: MatrixSource, progress: Callable[[int], object]) -> dict:
    root = zarr.open_group(target, mode="w", zarr_format=3)
    root.attrs.update({"encoding-type": "anndata", "encoding-version": "0.1.0"})
    ad.io.write_elem(root, "obs", source.obs)
    ad.io.write_elem(root, "var", source.var)
    for name in ("obsm", "varm", "obsp", "varp", "uns"):
        ad.io.write_elem(root, name, dict(source.elements.get(name, {})))
    if "raw/X" in source.matrices:
        raw = root.create_group("raw")
        raw.attrs.update({"encoding-type": "raw", "encoding-version": "0.1.0"})
        ad.io.write_elem(raw, "var", source.elements["raw/var"])
        ad.io.write_elem(raw, "varm", dict(source.elements.get("raw/varm", {})))
    root.create_group("layers").attrs.update({"encoding-type": "dict", "encoding-version": "0.1.0"})
    described = {}
    for name, matrix in source.matrices.items():
        _write_rows(root, name, matrix, progress)
        described[name] = {
            "shape": list(matrix.shape),
            "dtype": str(matrix.dtype),
            "format": "csr" if matrix.is_sparse else "dense",
        }
    return {
        "n_obs": len(source.obs),
        "n_vars": len(source.var),
        "matrices": described,
        "obs_columns": [str(c) for c in source.obs.columns],
        "var_columns": [str(c) for c in source.var.columns],
    }


def rows_per_block(matrix: RowBlocks) -> int:
    """How many rows to convert at once: about ROWS_PER_BLOCK_ENTRIES stored values, judged
    from the first thousand rows."""
    sample = matrix.read(0, min(matrix.shape[0], 1000))
    width = sample.nnz / max(1, sample.shape[0]) if sparse.issparse(sample) else matrix.shape[1]
    return max(1, min(matrix.shape[0], int(ROWS_PER_BLOCK_ENTRIES / max(width, 1))))


def _write_rows(root, name: str, matrix: RowBlocks, progress: Callable[[int], object]) -> None:
    rows = rows_per_block(matrix)
    if matrix.is_sparse:
        _write_sparse_rows(root, name, matrix, rows, progress)
        return
    n_rows, n_cols = matrix.shape
    chunk_rows = max(1, min(n_rows, DENSE_CHUNK_BYTES // max(1, n_cols * matrix.dtype.itemsize)))
    array = root.create_array(
        name,
        shape=matrix.shape,
        dtype=matrix.dtype,
        chunks=(chunk_rows, max(1, n_cols)),
        compressors=COMPRESSOR,
    )
    array.attrs.update({"encoding-type": "array", "encoding-version": "0.2.0"})
    rows = max(chunk_rows, rows // chunk_rows * chunk_rows)  # whole chunks at a time
    for start in range(0, n_rows, rows):
        stop = min(start + rows, n_rows)
        array[start:stop] = matrix.read(start, stop)
        progress(stop - start)


def _write_sparse_rows(
    root, name: str, matrix: RowBlocks, rows: int, progress: Callable[[int], object]
) -> None:
    blocks = matrix.blocks(rows)
    first = next(blocks, sparse.csr_matrix((0, matrix.shape[1]), dtype=matrix.dtype))
    ad.io.write_elem(
        root,
        name,
        sparse.csr_matrix(first),
        dataset_kwargs={"chunks": (ENTRIES_PER_CHUNK,), "compressors": COMPRESSOR},
    )
    progress(first.shape[0])
    written = ad.io.sparse_dataset(root[name])
    for block in blocks:
        written.append(sparse.csr_matrix(block))
        progress(block.shape[0])
