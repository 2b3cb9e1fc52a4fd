"""`enclave.open_matrix`: a genomic matrix as AnnData, its matrices lazy.

X, the layers and raw X are dask arrays cut into blocks of whole rows (cells), each block
read when it is needed: CSR blocks stay sparse. obs, var, obsm, varm, obsp, varp and uns are
read into memory. scanpy's preprocessing works on it as it is (see `enclave.matrices.analysis`
for a whole pipeline); on a distributed Dask client, when one is running, the blocks are read
by its workers.
"""

from __future__ import annotations

import os
from pathlib import Path

import anndata as ad
import zarr

from ..catalog import CatalogError, locate

BLOCK_ENTRIES = 1 << 22  # stored values per block of rows: about 32 MiB of CSR


def open_matrix(
    reference: str | os.PathLike, root: Path | None = None, rows_per_block: int | None = None
) -> ad.AnnData:
    """A matrix by its `dataset-id/object-id` reference, or a store by path. Blocks hold
    `rows_per_block` cells, by default as many as make about 4 million stored values."""
    path, _ = locate(reference, "matrix", root)
    try:
        group = zarr.open_group(path, mode="r")
        if group.attrs.get("encoding-type") != "anndata":
            raise ValueError("no AnnData encoding")

        def lazy(element):
            rows = rows_per_block or _rows_per_block(element)
            return ad.experimental.read_elem_lazy(element, chunks=(rows, -1))

        def eager(name: str, within=group):
            return ad.io.read_elem(within[name]) if name in within else None

        adata = ad.AnnData(
            X=lazy(group["X"]) if "X" in group else None,
            obs=eager("obs"),
            var=eager("var"),
            obsm=eager("obsm"),
            varm=eager("varm"),
            obsp=eager("obsp"),
            varp=eager("varp"),
            uns=eager("uns"),
            layers={name: lazy(group["layers"][name]) for name in group.get("layers", {})},
        )
        if "raw" in group:
            raw = group["raw"]
            adata.raw = ad.AnnData(
                X=lazy(raw["X"]), obs=adata.obs[[]], var=eager("var", raw), varm=eager("varm", raw)
            )
    except (OSError, KeyError, ValueError, TypeError) as error:
        raise CatalogError(f"{path}: not a readable matrix store ({error})") from None
    return adata


def _rows_per_block(element) -> int:
    """Rows making about BLOCK_ENTRIES stored values, in whole storage chunks for dense."""
    if isinstance(element, zarr.Array):
        columns = element.shape[1]
        chunk = element.chunks[0]
        per_block = max(1, BLOCK_ENTRIES // max(1, columns))
        return max(chunk, per_block // chunk * chunk)
    rows = int(element.attrs["shape"][0])
    entries = int(element["indptr"][-1]) if rows else 0
    return max(1, min(max(rows, 1), int(BLOCK_ENTRIES * rows / max(entries, 1))))
