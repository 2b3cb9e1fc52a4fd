"""Out-of-core preprocessing of a lazy AnnData (`enclave.open_matrix`): scanpy's own dask
support where it has it, Enclave's where it does not.

normalize_total, log1p and highly_variable_genes run through scanpy on the dask X as they
are: lazily, or in one pass over the blocks. Scaling and PCA are Enclave's: scanpy's `scale`
turns the matrix dense in float64 (a block of 20,000 cells by 2,000 genes is 320 MB) before
its PCA reads it, and its PCA of dense dask arrays needs dask-ml. `scaled_pca` gives the same
result as `scale` then `pca` in memory: one pass over the blocks sums each gene, its square
and the gene-by-gene products, a few thousand cells densified at a time; the covariance of the
scaled genes follows, and its eigenvectors are the components; a second pass projects the
blocks. Memory stays that of one block per worker, whatever the number of cells. Passes run
on dask's scheduler: the project's cluster when a distributed client is running.
"""

from __future__ import annotations

import anndata as ad
import dask
import dask.array as da
import numpy as np
import scanpy as sc
from scipy import sparse
from scipy.linalg.blas import dsyrk

from .matrix import BLOCK_ENTRIES

DENSE_ROWS = 2048  # cells densified at a time for the gene-by-gene products


def preprocess(
    adata: ad.AnnData, n_top_genes: int = 2000, n_comps: int = 50, target_sum: float = 1e4
) -> ad.AnnData:
    """normalize_total, log1p, highly_variable_genes, then scale and PCA of the highly
    variable genes (`scaled_pca`), in place; X stays lazy and log-normalised."""
    sc.pp.normalize_total(adata, target_sum=target_sum)
    sc.pp.log1p(adata)
    sc.pp.highly_variable_genes(adata, n_top_genes=n_top_genes)
    scaled_pca(adata, n_comps=n_comps)
    return adata


def scaled_pca(adata: ad.AnnData, n_comps: int = 50, mask_var: str = "highly_variable") -> None:
    """PCA of the genes in `mask_var`, each centred and scaled to unit variance, as scanpy's
    `scale` then `pca` would give: `obsm['X_pca']`, `varm['PCs']` (zero outside the mask) and
    `uns['pca']` (variance, variance_ratio). Signs follow scikit-learn: each component's
    largest loading is positive."""
    mask = adata.var[mask_var].to_numpy(bool) if mask_var else np.ones(adata.n_vars, bool)
    genes = int(mask.sum())
    if not 0 < n_comps <= genes:
        raise ValueError(f"n_comps={n_comps}: choose between 1 and the {genes} genes in the mask")
    matrix = _as_dask(adata.X)[:, np.flatnonzero(mask)]
    count, sums, squares, products = _moments(matrix)
    mean = sums / count
    variance = (squares - count * mean**2) / (count - 1)
    scale = np.sqrt(np.maximum(variance, 0))
    scale[scale == 0] = 1
    covariance = (products - count * np.outer(mean, mean)) / (count - 1)
    correlation = covariance / np.outer(scale, scale)
    values, vectors = np.linalg.eigh(correlation)
    order = np.argsort(values)[::-1][:n_comps]
    values, vectors = values[order], vectors[:, order]
    largest = np.argmax(np.abs(vectors), axis=0)
    vectors *= np.sign(vectors[largest, np.arange(n_comps)])
    weights = vectors / scale[:, None]
    offset = mean @ weights
    scores = matrix.map_blocks(
        _project, weights, offset, dtype=np.float32, chunks=(matrix.chunks[0], (n_comps,))
    )
    adata.obsm["X_pca"] = scores.compute()
    loadings = np.zeros((adata.n_vars, n_comps), np.float32)
    loadings[mask] = vectors
    adata.varm["PCs"] = loadings
    adata.uns["pca"] = {
        "params": {"zero_center": True, "scaled": True, "mask_var": mask_var},
        "variance": values,
        "variance_ratio": values / np.trace(correlation),
    }


def _as_dask(matrix) -> da.Array:
    if isinstance(matrix, da.Array):
        return matrix
    return da.from_array(matrix, chunks=(max(1, BLOCK_ENTRIES // max(1, matrix.shape[1])), -1))


def _moments(matrix: da.Array) -> tuple[int, np.ndarray, np.ndarray, np.ndarray]:
    """Over all rows: their number, each column's sum and sum of squares, and the column
    products (X^T X), summed block by block along a binary tree so that few partial results
    are held at once."""
    parts = [dask.delayed(_block_moments)(block) for block in matrix.to_delayed().ravel()]
    while len(parts) > 1:
        pairs = [parts[i : i + 2] for i in range(0, len(parts), 2)]
        parts = [dask.delayed(_add)(*pair) if len(pair) == 2 else pair[0] for pair in pairs]
    return parts[0].compute()


def _block_moments(block) -> tuple[int, np.ndarray, np.ndarray, np.ndarray]:
    columns = block.shape[1]
    products = np.zeros((columns, columns))
    sums, squares = np.zeros(columns), np.zeros(columns)
    for start in range(0, block.shape[0], DENSE_ROWS):
        part = block[start : start + DENSE_ROWS]
        dense = part.toarray() if sparse.issparse(part) else np.asarray(part)
        dense = dense.astype(np.float64, copy=False)
        sums += dense.sum(axis=0)
        squares += np.einsum("ij,ij->j", dense, dense)
        products = dsyrk(1.0, dense, beta=1.0, c=products, trans=1, overwrite_c=1)
    upper = np.triu(products)
    return block.shape[0], sums, squares, upper + np.triu(upper, 1).T


def _add(first: tuple, second: tuple) -> tuple:
    return tuple(a + b for a, b in zip(first, second, strict=True))


def _project(block, weights: np.ndarray, offset: np.ndarray) -> np.ndarray:
    return (np.asarray(block @ weights) - offset).astype(np.float32)
