"""`enclave dataset ingest matrix` and `enclave.open_matrix`: scanpy's real pbmc68k_reduced
comes back element for element; 10x HDF5 files and Matrix Market folders read as scanpy's own
readers read them; donor ids become keyed pseudonyms; bad input is named and nothing
half-written is registered."""

from __future__ import annotations

import gzip
import shutil
import subprocess
import sys
from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import pytest
import scanpy as sc
from scipy import io, sparse

import enclave
from enclave.matrices.ingest import ingest_matrices

KEY = b"project-key-0123456789abcdefghij"


def _ingest(root: Path, *sources: Path, dataset="ds-rna", **options) -> tuple[list, list[str]]:
    lines: list[str] = []
    outcomes = ingest_matrices(
        sources, dataset, root, KEY, show_progress=False, report=lines.append, **options
    )
    return outcomes, lines


def _assert_same_uns(ours, theirs, where="uns") -> None:
    assert set(ours) == set(theirs), where
    for name, value in theirs.items():
        if isinstance(value, dict):
            _assert_same_uns(ours[name], value, f"{where}/{name}")
        else:
            np.testing.assert_array_equal(np.asarray(ours[name]), np.asarray(value), err_msg=where)


def _dense(matrix) -> np.ndarray:
    matrix = matrix.compute() if hasattr(matrix, "compute") else matrix
    return matrix.toarray() if sparse.issparse(matrix) else np.asarray(matrix)


@pytest.mark.parametrize("written_by", ["scanpy's bundled file", "current anndata"])
def test_every_element_of_pbmc68k_reduced_comes_back_equal(tmp_path, written_by):
    expected = sc.datasets.pbmc68k_reduced()
    expected.layers["counts"] = expected.raw.X.copy()
    source = tmp_path / "pbmc68k.h5ad"
    if written_by == "current anndata":
        expected.write_h5ad(source)
    else:
        shutil.copy(Path(sc.__file__).parent / "datasets" / "10x_pbmc68k_reduced.h5ad", source)
        del expected.layers["counts"]
    outcomes, _ = _ingest(tmp_path / "data", source)
    assert [o.object_id for o in outcomes] == ["pbmc68k"]

    found = enclave.open_matrix("ds-rna/pbmc68k", tmp_path / "data", rows_per_block=256)
    assert found.X.chunks[0] == (256, 256, 188), "X is read in blocks of rows"
    np.testing.assert_array_equal(_dense(found.X), expected.X)
    for name in expected.layers:
        assert sparse.issparse(found.layers[name]._meta), "sparse blocks stay sparse"
        np.testing.assert_array_equal(_dense(found.layers[name]), _dense(expected.layers[name]))
    pd.testing.assert_frame_equal(found.obs, expected.obs)
    pd.testing.assert_frame_equal(found.var, expected.var)
    for mapping in ("obsm", "varm", "obsp"):
        ours, theirs = getattr(found, mapping), getattr(expected, mapping)
        assert set(ours) == set(theirs)
        for name in theirs:
            np.testing.assert_array_equal(_dense(ours[name]), _dense(theirs[name]))
    _assert_same_uns(found.uns, expected.uns)
    np.testing.assert_array_equal(_dense(found.raw.X), _dense(expected.raw.X))
    pd.testing.assert_frame_equal(found.raw.var, expected.raw.var)
    # anndata itself reads the store: it is AnnData's own format.
    assert ad.read_zarr(tmp_path / "data" / "ds-rna" / "pbmc68k.zarr").shape == expected.shape


def _counts(cells: int = 300, genes: int = 120) -> sparse.csr_matrix:
    rng = np.random.default_rng(7)
    matrix = sparse.random(cells, genes, density=0.1, format="csr", random_state=rng)
    matrix.data = np.ceil(matrix.data * 20)
    return matrix.astype(np.float32)


def _write_tenx_h5(path: Path, counts: sparse.csr_matrix) -> None:
    """A Cell Ranger 3 feature-barcode matrix: genes x cells, compressed by cell."""
    cells, genes = counts.shape
    by_cell = counts.astype(np.int32)
    with h5py.File(path, "w") as handle:
        group = handle.create_group("matrix")
        group["barcodes"] = np.array([f"AAAC{i:06d}-1" for i in range(cells)], dtype="S")
        group["data"], group["indices"] = by_cell.data, by_cell.indices.astype(np.int64)
        group["indptr"], group["shape"] = by_cell.indptr.astype(np.int64), [genes, cells]
        features = group.create_group("features")
        features["id"] = np.array([f"ENSG{i:011d}" for i in range(genes)], dtype="S")
        features["name"] = np.array([f"GENE{i % (genes - 5)}" for i in range(genes)], dtype="S")
        features["feature_type"] = np.array(["Gene Expression"] * genes, dtype="S")
        features["genome"] = np.array(["GRCh38"] * genes, dtype="S")


def _write_matrix_market(folder: Path, counts: sparse.csr_matrix, shuffle: bool) -> None:
    """A Cell Ranger 3 folder, gzipped; entries in a random order when `shuffle`."""
    folder.mkdir()
    cells, genes = counts.shape
    coordinates = counts.T.tocoo()
    if shuffle:
        order = np.random.default_rng(1).permutation(coordinates.nnz)
        coordinates = sparse.coo_matrix(
            (coordinates.data[order], (coordinates.row[order], coordinates.col[order])),
            shape=coordinates.shape,
        )
    with gzip.open(folder / "matrix.mtx.gz", "wb") as stream:
        io.mmwrite(stream, coordinates.astype(np.int64), field="integer")
    barcodes = pd.DataFrame([f"AAAC{i:06d}-1" for i in range(cells)])
    barcodes.to_csv(folder / "barcodes.tsv.gz", sep="\t", header=False, index=False)
    features = pd.DataFrame(
        {
            "id": [f"ENSG{i:011d}" for i in range(genes)],
            "name": [f"GENE{i % (genes - 5)}" for i in range(genes)],
            "type": "Gene Expression",
        }
    )
    features.to_csv(folder / "features.tsv.gz", sep="\t", header=False, index=False)


def _assert_same_as(found: ad.AnnData, theirs: ad.AnnData) -> None:
    np.testing.assert_array_equal(_dense(found.X), _dense(theirs.X))
    assert list(found.obs_names) == list(theirs.obs_names)
    assert list(found.var_names) == list(theirs.var_names)
    for column in ("gene_ids", "feature_types"):
        assert list(found.var[column]) == list(theirs.var[column])


def test_a_10x_h5_file_reads_as_scanpys_reader_reads_it(tmp_path):
    source = tmp_path / "donor7_filtered.h5"
    _write_tenx_h5(source, _counts())
    outcomes, _ = _ingest(tmp_path / "data", source)
    assert outcomes[0].error is None
    found = enclave.open_matrix("ds-rna/donor7_filtered", tmp_path / "data")
    theirs = sc.read_10x_h5(source)
    theirs.var_names_make_unique()  # as scanpy's documentation asks; Enclave always does
    _assert_same_as(found, theirs)


@pytest.mark.parametrize("shuffle", [False, True], ids=["by cell", "any order"])
def test_a_matrix_market_folder_reads_as_scanpys_reader_reads_it(tmp_path, monkeypatch, shuffle):
    monkeypatch.setattr("enclave.matrices.sources.SPILL_ENTRIES", 500)  # many pieces, blocks
    source = tmp_path / "sample3"
    _write_matrix_market(source, _counts(), shuffle)
    outcomes, _ = _ingest(tmp_path / "data", source)
    assert outcomes[0].error is None
    found = enclave.open_matrix("ds-rna/sample3", tmp_path / "data")
    _assert_same_as(found, sc.read_10x_mtx(source))


def test_donor_ids_become_keyed_pseudonyms_stable_within_a_project(tmp_path):
    adata = ad.AnnData(_counts(6, 10))
    adata.obs["donor_id"] = pd.Categorical(["D-101", "D-101", "D-202", "D-202", "D-303", "D-101"])
    adata.obs["sample"] = ["S1", "S1", "S2", "S2", "S3", "S1"]
    adata.write_h5ad(tmp_path / "cohort.h5ad")
    shutil.copy(tmp_path / "cohort.h5ad", tmp_path / "cohort2.h5ad")
    sources = (tmp_path / "cohort.h5ad", tmp_path / "cohort2.h5ad")
    _, lines = _ingest(tmp_path / "a", *sources, pseudonymise=["donor_id"])
    assert any("obs column 'sample' looks like an identifier" in line for line in lines)
    first = enclave.open_matrix("ds-rna/cohort", tmp_path / "a").obs["donor_id"]
    second = enclave.open_matrix("ds-rna/cohort2", tmp_path / "a").obs["donor_id"]
    assert list(first) == list(second), "the same key gives the same pseudonyms"
    assert first.nunique() == 3 and not {"D-101", "D-202", "D-303"} & set(first)
    assert first.iloc[0] == first.iloc[1] != first.iloc[2]

    other = ingest_matrices(
        [tmp_path / "cohort.h5ad"],
        "ds-rna",
        tmp_path / "b",
        b"another-project-key-0123456789ab",
        pseudonymise=["donor_id"],
        show_progress=False,
        report=lambda _: None,
    )
    assert other[0].error is None
    elsewhere = enclave.open_matrix("ds-rna/cohort", tmp_path / "b").obs["donor_id"]
    assert not set(elsewhere) & set(first), "another project's key gives other pseudonyms"
    for path in (tmp_path / "a").rglob("*"):
        if path.is_file():
            content = path.read_bytes()
            assert b"D-101" not in content and KEY not in content, path


def _registered(root: Path) -> list[str]:
    return [p.name for p in (root / "ds-rna").iterdir() if not p.name.startswith(".")]


def test_bad_input_is_named_and_nothing_is_registered(tmp_path):
    good = tmp_path / "good.h5ad"
    ad.AnnData(_counts(2000, 50)).write_h5ad(good)
    truncated = tmp_path / "truncated.h5ad"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    no_barcodes = tmp_path / "sample9"
    _write_matrix_market(no_barcodes, _counts(), shuffle=False)
    (no_barcodes / "barcodes.tsv.gz").unlink()
    unknown = tmp_path / "notes.txt"
    unknown.write_text("not a matrix")

    outcomes, lines = _ingest(tmp_path / "data", truncated, no_barcodes, unknown, good)
    errors = [o.error for o in outcomes]
    assert "truncated.h5ad" in errors[0]
    assert "sample9: no barcodes.tsv[.gz] in this Matrix Market folder" in errors[1]
    assert "notes.txt: not a .h5ad, a 10x .h5 file or a Matrix Market folder" in errors[2]
    assert errors[3] is None
    assert lines[-1] == "1 matrix source(s) ingested into ds-rna, 3 failed"
    assert sorted(_registered(tmp_path / "data")) == ["dataset.json", "good.zarr"]
    assert list(enclave.dataset("ds-rna", tmp_path / "data").objects) == ["good"]


def test_the_command_line_ingests_and_keeps_the_key_outside_the_data(tmp_path):
    config = tmp_path / "enclave.yaml"
    config.write_text(f"state_dir: {tmp_path / 'state'}\ndata_root: {tmp_path / 'data'}\n")
    adata = ad.AnnData(_counts(20, 10))
    adata.obs["donor"] = [f"donor-{i % 3}" for i in range(20)]
    adata.write_h5ad(tmp_path / "cells.h5ad")
    done = subprocess.run(
        [
            *(sys.executable, "-m", "enclave_hub.cli", "dataset", "ingest", "matrix"),
            *(str(tmp_path / "cells.h5ad"), "--dataset", "ds-cli", "--pseudonymise", "donor"),
            *("--config", str(config)),
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr + done.stdout
    key = (tmp_path / "state" / "deid-keys" / "commons.key").read_bytes()
    for path in (tmp_path / "data").rglob("*"):
        if path.is_file():
            assert key not in path.read_bytes() and b"donor-1" not in path.read_bytes()
    manifest = enclave.dataset("ds-cli", tmp_path / "data").manifest
    assert manifest["objects"]["cells"]["deidentification"] == {
        "obs_columns_pseudonymised": ["donor"]
    }
