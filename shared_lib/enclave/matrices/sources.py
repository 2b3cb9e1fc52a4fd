"""Genomic matrices as they arrive, read a block of rows (cells) at a time: an AnnData .h5ad
file, a 10x Genomics HDF5 file, or a Matrix Market folder (matrix.mtx, barcodes.tsv and
features.tsv or genes.tsv, each possibly gzipped).

A source gives its obs and var tables, its matrices (X, layers, raw X) as `RowBlocks`, and its
other AnnData elements (obsm, varm, obsp, varp, uns, raw var) in memory. 10x files follow
scanpy's readers: cells by genes, gene symbols (made unique) as var names, float32 counts.
"""

from __future__ import annotations

import gzip
import os
import tempfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import pandas as pd
from scipy import sparse

MATRIX_MARKET = "matrix.mtx"
BARCODES = "barcodes.tsv"
FEATURES = ("features.tsv", "genes.tsv")
ANNDATA_ELEMENTS = ("obsm", "varm", "obsp", "varp", "uns")
SPILL_ENTRIES = 1 << 22  # Matrix Market entries parsed at once


class MatrixError(ValueError):
    """A source that cannot be read; the message names the file and what is wrong."""


@dataclass(frozen=True)
class RowBlocks:
    """A cells x features matrix, read `rows` rows at a time."""

    shape: tuple[int, int]
    dtype: np.dtype
    is_sparse: bool
    read: Callable[[int, int], sparse.csr_matrix | np.ndarray]  # rows [start, stop)

    def blocks(self, rows: int) -> Iterator[sparse.csr_matrix | np.ndarray]:
        for start in range(0, self.shape[0], rows):
            yield self.read(start, min(start + rows, self.shape[0]))


@dataclass
class MatrixSource:
    """What one source file (or folder) holds, ready to be written as AnnData."""

    name: str
    obs: pd.DataFrame
    var: pd.DataFrame
    matrices: dict[str, RowBlocks]  # "X", "layers/<name>", "raw/X"
    elements: dict[str, object] = field(default_factory=dict)  # "obsm", "uns", "raw/var"...
    cleanup: list[Callable[[], None]] = field(default_factory=list)

    def close(self) -> None:
        for step in self.cleanup:
            step()


def open_source(path: Path, spill_dir: Path | None = None) -> MatrixSource:
    """The source at `path`, by its kind; raises MatrixError naming what is wrong."""
    if path.is_dir():
        return _matrix_market(path, spill_dir)
    if not path.is_file():
        raise MatrixError(f"{path}: no such file or folder")
    if path.suffix == ".h5ad":
        return _h5ad(path)
    if path.suffix == ".h5":
        return _tenx_h5(path)
    raise MatrixError(f"{path}: not a .h5ad, a 10x .h5 file or a Matrix Market folder")


def _open_hdf5(path: Path) -> h5py.File:
    try:
        return h5py.File(path, "r")
    except OSError as error:
        if error.errno:  # the file itself cannot be opened
            raise MatrixError(f"{path}: cannot be read ({os.strerror(error.errno)})") from None
        raise MatrixError(f"{path}: not a readable HDF5 file ({error})") from None


# -- AnnData .h5ad ---------------------------------------------------------------------------


def _h5ad(path: Path) -> MatrixSource:
    handle = _open_hdf5(path)
    try:
        if handle.attrs.get("encoding-type") != "anndata":
            handle.close()
            return _h5ad_in_memory(path)
        source = MatrixSource(
            name=path.stem,
            obs=ad.io.read_elem(handle["obs"]),
            var=ad.io.read_elem(handle["var"]),
            matrices={},
            cleanup=[handle.close],
        )
        n_obs, n_vars = len(source.obs), len(source.var)
        if "X" in handle:
            source.matrices["X"] = _h5ad_rows(path, handle["X"], (n_obs, n_vars))
        for name in handle.get("layers", {}):
            source.matrices[f"layers/{name}"] = _h5ad_rows(
                path, handle["layers"][name], (n_obs, n_vars)
            )
        for name in ANNDATA_ELEMENTS:
            if name in handle:
                source.elements[name] = ad.io.read_elem(handle[name])
        if "raw" in handle:
            raw = handle["raw"]
            source.elements["raw/var"] = ad.io.read_elem(raw["var"])
            if "varm" in raw:
                source.elements["raw/varm"] = ad.io.read_elem(raw["varm"])
            raw_shape = (n_obs, len(source.elements["raw/var"]))
            source.matrices["raw/X"] = _h5ad_rows(path, raw["X"], raw_shape)
        return source
    except Exception as error:  # h5py and anndata raise many kinds for a damaged file
        handle.close()
        if isinstance(error, MatrixError):
            raise
        raise MatrixError(f"{path}: not a readable AnnData file ({error})") from None


def _h5ad_rows(path: Path, element, shape: tuple[int, int]) -> RowBlocks:
    """Row blocks of one matrix element of an .h5ad file (CSR, CSC or dense)."""
    if isinstance(element, h5py.Dataset):
        if element.shape != shape:
            raise MatrixError(f"{path}: {element.name} is {element.shape}, not {shape}")
        return RowBlocks(shape, element.dtype, False, lambda a, b: element[a:b])
    encoding = element.attrs.get("encoding-type")
    if encoding == "csr_matrix":
        return _csr_rows(path, element, shape)
    if encoding == "csc_matrix":
        # Rows of a CSC matrix are scattered through it: it is read whole, once.
        whole = ad.io.read_elem(element).tocsr()
        return RowBlocks(shape, whole.dtype, True, lambda a, b: whole[a:b])
    raise MatrixError(f"{path}: {element.name} is a {encoding!r}, not a matrix")


def _csr_rows(path: Path, group, shape: tuple[int, int], dtype=None) -> RowBlocks:
    """Row blocks of a CSR matrix stored as data, indices and indptr arrays."""
    indptr = group["indptr"][:]
    data, indices = group["data"], group["indices"]
    if len(indptr) != shape[0] + 1 or indptr[-1] > len(data) or len(data) != len(indices):
        raise MatrixError(f"{path}: {group.name} is not a consistent CSR matrix of {shape}")

    def read(start: int, stop: int) -> sparse.csr_matrix:
        first, last = indptr[start], indptr[stop]
        values = data[first:last]
        if dtype is not None and values.dtype != dtype:
            values = values.astype(dtype)
        return sparse.csr_matrix(
            (values, indices[first:last], indptr[start : stop + 1] - first),
            shape=(stop - start, shape[1]),
        )

    return RowBlocks(shape, np.dtype(dtype or data.dtype), True, read)


def _h5ad_in_memory(path: Path) -> MatrixSource:
    """A file written before AnnData's encoding attributes (anndata < 0.7): read whole."""
    try:
        adata = ad.read_h5ad(path)
    except Exception as error:  # h5py and anndata raise many kinds for a damaged file
        raise MatrixError(f"{path}: not a readable AnnData file ({error})") from None
    source = MatrixSource(name=path.stem, obs=adata.obs, var=adata.var, matrices={})

    def rows(matrix) -> RowBlocks:
        matrix = matrix.tocsr() if sparse.issparse(matrix) else np.asarray(matrix)
        return RowBlocks(
            matrix.shape, matrix.dtype, sparse.issparse(matrix), lambda a, b: matrix[a:b]
        )

    if adata.X is not None:
        source.matrices["X"] = rows(adata.X)
    for name, layer in adata.layers.items():
        source.matrices[f"layers/{name}"] = rows(layer)
    for name in ANNDATA_ELEMENTS:
        source.elements[name] = dict(getattr(adata, name))
    if adata.raw is not None:
        source.matrices["raw/X"] = rows(adata.raw.X)
        source.elements["raw/var"] = adata.raw.var
        source.elements["raw/varm"] = dict(adata.raw.varm)
    return source


# -- 10x Genomics HDF5 -----------------------------------------------------------------------


def _tenx_h5(path: Path) -> MatrixSource:
    handle = _open_hdf5(path)
    try:
        if "matrix" in handle:
            group = handle["matrix"]
            features = group["features"]
            var = pd.DataFrame(
                {
                    "gene_ids": features["id"][:].astype(str),
                    "feature_types": features["feature_type"][:].astype(str),
                    **(
                        {"genome": features["genome"][:].astype(str)}
                        if "genome" in features
                        else {}
                    ),
                },
                index=_unique(features["name"][:].astype(str)),
            )
        elif len(handle) == 1:  # Cell Ranger 2: one group, named after its genome
            group = next(iter(handle.values()))
            var = pd.DataFrame(
                {"gene_ids": group["genes"][:].astype(str)},
                index=_unique(group["gene_names"][:].astype(str)),
            )
        else:
            raise MatrixError(f"{path}: neither a 'matrix' group nor a single genome's group")
        obs = pd.DataFrame(index=pd.Index(group["barcodes"][:].astype(str)))
        genes, cells = (int(n) for n in group["shape"][:])
        if (genes, cells) != (len(var), len(obs)):
            raise MatrixError(
                f"{path}: its matrix is {genes} x {cells} but it names {len(var)} features "
                f"and {len(obs)} barcodes"
            )
        # Stored genes x cells, compressed by cell: that is cells x genes, compressed by row.
        matrix = _csr_rows(path, group, (cells, genes), dtype=np.float32)
    except Exception as error:  # h5py raises many kinds for a damaged file
        handle.close()
        if isinstance(error, MatrixError):
            raise
        raise MatrixError(f"{path}: not a readable 10x Genomics HDF5 file ({error})") from None
    obs.index.name = var.index.name = None
    return MatrixSource(path.stem, obs, var, {"X": matrix}, cleanup=[handle.close])


def _unique(names: np.ndarray) -> pd.Index:
    return ad.utils.make_index_unique(pd.Index(names))


# -- Matrix Market folders -------------------------------------------------------------------


def _find(folder: Path, names: tuple[str, ...]) -> Path:
    for name in names:
        for candidate in (folder / name, folder / f"{name}.gz"):
            if candidate.is_file():
                return candidate
    wanted = " or ".join(f"{name}[.gz]" for name in names)
    raise MatrixError(f"{folder}: no {wanted} in this Matrix Market folder")


def _table(path: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(path, sep="\t", header=None, dtype=str, keep_default_na=False)
    except (OSError, ValueError, EOFError, zlib.error) as error:
        raise MatrixError(f"{path}: not a readable table ({error})") from None


def _matrix_market(folder: Path, spill_dir: Path | None) -> MatrixSource:
    matrix_path = _find(folder, (MATRIX_MARKET,))
    barcodes = _table(_find(folder, (BARCODES,)))
    features = _table(_find(folder, FEATURES))
    obs = pd.DataFrame(index=pd.Index(barcodes[0].to_numpy()))
    names = features[1] if features.shape[1] > 1 else features[0]
    var = pd.DataFrame({"gene_ids": features[0].to_numpy()}, index=_unique(names.to_numpy()))
    if features.shape[1] > 2:
        var["feature_types"] = features[2].to_numpy()
    spill = tempfile.TemporaryDirectory(dir=spill_dir, prefix="mtx-")
    try:
        blocks = _spill_by_cell(matrix_path, len(var), len(obs), Path(spill.name))
    except BaseException:
        spill.cleanup()
        raise
    return MatrixSource(folder.name, obs, var, {"X": blocks}, cleanup=[spill.cleanup])


def _opener(path: Path):
    return gzip.open(path, "rt") if path.suffix == ".gz" else open(path)


def _spill_by_cell(path: Path, genes: int, cells: int, spill: Path) -> RowBlocks:
    """Parse the coordinate entries (genes x cells, 1-based) once, in pieces, spilling them
    to one file per block of cells: any entry order works in bounded memory."""
    try:
        with _opener(path) as stream:
            header = stream.readline()
            if not header.startswith("%%MatrixMarket matrix coordinate"):
                raise MatrixError(f"{path}: not a Matrix Market coordinate matrix")
            line = stream.readline()
            while line.startswith("%"):
                line = stream.readline()
            rows, cols, entries = (int(v) for v in line.split())
            if (rows, cols) != (genes, cells):
                raise MatrixError(
                    f"{path}: the matrix is {rows} x {cols} but the folder names {genes} "
                    f"features and {cells} barcodes"
                )
            block_cells = max(1, SPILL_ENTRIES // max(1, entries // max(cells, 1)))
            seen = 0
            pieces = pd.read_csv(
                stream,
                sep=r"\s+",
                header=None,
                names=["gene", "cell", "value"],
                dtype={"gene": np.int64, "cell": np.int64, "value": np.float32},
                chunksize=SPILL_ENTRIES,
                engine="c",
            )
            for piece in pieces:
                gene = piece["gene"].to_numpy() - 1
                cell = piece["cell"].to_numpy() - 1
                if gene.min() < 0 or gene.max() >= genes or cell.min() < 0 or cell.max() >= cells:
                    raise MatrixError(f"{path}: an entry lies outside the {rows} x {cols} matrix")
                seen += len(piece)
                block = cell // block_cells
                order = np.argsort(block, kind="stable")
                bounds = np.searchsorted(block[order], np.arange(block.max() + 2))
                value = piece["value"].to_numpy()
                for number in np.unique(block):
                    take = order[bounds[number] : bounds[number + 1]]
                    _append_spill(spill / str(number), cell[take], gene[take], value[take])
    except (OSError, ValueError, EOFError, zlib.error) as error:
        if isinstance(error, MatrixError):
            raise
        raise MatrixError(f"{path}: not a readable Matrix Market file ({error})") from None
    if seen != entries:
        raise MatrixError(f"{path}: it announces {entries} entries but holds {seen}")

    def read(start: int, stop: int) -> sparse.csr_matrix:
        parts = [
            _read_spill(spill / str(number))
            for number in range(start // block_cells, (stop - 1) // block_cells + 1)
        ]
        cell = np.concatenate([p[0] for p in parts]) - start
        gene = np.concatenate([p[1] for p in parts])
        value = np.concatenate([p[2] for p in parts])
        keep = (cell >= 0) & (cell < stop - start)
        matrix = sparse.coo_matrix(
            (value[keep], (cell[keep], gene[keep])), shape=(stop - start, genes)
        ).tocsr()
        matrix.sort_indices()
        return matrix

    return RowBlocks((cells, genes), np.dtype(np.float32), True, read)


SPILL_COLUMNS = (("cell", np.int64), ("gene", np.int32), ("value", np.float32))


def _append_spill(prefix: Path, *columns: np.ndarray) -> None:
    for (suffix, dtype), values in zip(SPILL_COLUMNS, columns, strict=True):
        with open(f"{prefix}.{suffix}", "ab") as stream:
            stream.write(np.ascontiguousarray(values, dtype=dtype).tobytes())


def _read_spill(prefix: Path) -> list[np.ndarray]:
    columns = []
    for suffix, dtype in SPILL_COLUMNS:
        path = Path(f"{prefix}.{suffix}")
        columns.append(np.fromfile(path, dtype) if path.exists() else np.empty(0, dtype))
    return columns
