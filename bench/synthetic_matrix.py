"""A synthetic single-cell count matrix, written as an Enclave AnnData store a block of cells
at a time (never whole in memory).

Each cell belongs to one of a few cell types; a type's expression profile is a power-law over
the genes, with its own set of strongly expressed marker genes, and a cell's counts are
`reads` draws from its type's profile, so that the genes vary by type (highly variable genes
and principal components mean something) and each cell has a few hundred to a few thousand
genes detected, as in 10x data.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from scipy import sparse

from enclave.matrices.sources import MatrixSource, RowBlocks
from enclave.matrices.store import write_anndata

CELL_TYPES = 12
MARKERS = 40
TABLE = 1 << 20


def synthetic_counts(
    cells: int, genes: int, reads: int, seed: int = 0, period: int | None = None
) -> RowBlocks:
    """Rows of the matrix, generated on demand; a given row is the same whenever it is read.
    With `period`, only that many distinct cells are generated, repeated (quick to make, for
    tests that need size rather than variety)."""
    rng = np.random.default_rng(seed)
    base = 1.0 / np.arange(1, genes + 1) ** 0.9
    profiles = np.tile(base[rng.permutation(genes)], (CELL_TYPES, 1))
    for profile in profiles:
        profile[rng.choice(genes, MARKERS, replace=False)] += base[0] / 4
    profiles /= profiles.sum(axis=1, keepdims=True)
    # Inverse cumulative profiles, tabulated: a draw u of a cell of type k picks the gene
    # table[k, u * TABLE]: one lookup instead of a binary search.
    steps = (np.arange(TABLE) + 0.5) / TABLE
    table = np.stack(
        [np.searchsorted(np.cumsum(p), steps).astype(np.int32) for p in profiles]
    ).clip(0, genes - 1)

    def read(start: int, stop: int) -> sparse.csr_matrix:
        block = np.random.default_rng([seed, start])
        kinds = block.integers(CELL_TYPES, size=stop - start)
        depth = np.maximum(block.poisson(reads, size=stop - start), 1)
        owner = np.repeat(np.arange(stop - start, dtype=np.int64), depth)
        slot = (block.random(len(owner)) * TABLE).astype(np.int64)
        key = np.sort(owner * genes + table[kinds[owner], slot])
        starts = np.flatnonzero(np.diff(key, prepend=-1))
        counts = np.diff(np.append(starts, len(key)))
        rows, columns = np.divmod(key[starts], genes)
        return sparse.csr_matrix(
            (counts.astype(np.float32), (rows, columns)), shape=(stop - start, genes)
        )

    if period is None:
        return RowBlocks((cells, genes), np.dtype(np.float32), True, read)
    cycle = read(0, period)
    return RowBlocks(
        (cells, genes), np.dtype(np.float32), True, lambda a, b: cycle[np.arange(a, b) % period]
    )


def write_synthetic(
    target: Path, cells: int, genes: int, reads: int, seed: int = 0, period: int | None = None
) -> None:
    """The synthetic matrix as an AnnData store at `target`."""
    source = MatrixSource(
        name="synthetic",
        obs=pd.DataFrame(index=pd.Index([f"cell{i}" for i in range(cells)])),
        var=pd.DataFrame(index=pd.Index([f"gene{i}" for i in range(genes)])),
        matrices={"X": synthetic_counts(cells, genes, reads, seed, period)},
    )
    write_anndata(target, source)
