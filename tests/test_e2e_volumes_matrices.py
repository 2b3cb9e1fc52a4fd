"""A DICOM series and a genomic matrix, ingested and granted to a project, are read by the
library inside that project's sandboxed session, where the datasets are mounted read-only."""

from __future__ import annotations

from pathlib import Path

import anndata as ad
import numpy as np
import pydicom
import pytest
import scanpy as sc
from pydicom.data import get_testdata_file

from enclave.matrices.ingest import ingest_matrices
from enclave.volumes.ingest import ingest_dicom
from enclave_harness import run_in_project_session

pytestmark = pytest.mark.e2e

USER, PROJECT = "omar", "multimodal-study"
KEY = b"release-key-0123456789abcdefghij"
IN_SESSION = """
import json
import enclave
from enclave.matrices.analysis import preprocess
volume = enclave.open_volume("ds-ct/5-smartscore-gated-0-5-sec")
cells = enclave.open_matrix("ds-rna/counts")
preprocess(cells, n_top_genes=200, n_comps=10)
print(json.dumps({
    "datasets": enclave.datasets(),
    "volume": volume.values[0].tolist(),
    "units": volume.attrs["units"],
    "spacing": volume.attrs["spacing_mm"],
    "lazy": type(cells.X).__module__,
    "pcs": list(cells.obsm["X_pca"].shape),
    "variance_ratio": float(cells.uns["pca"]["variance_ratio"].sum()),
}))
"""


def test_a_volume_and_a_matrix_are_read_inside_a_session(enclave, tmp_path):
    root = enclave.site.data_root
    dicom = Path(get_testdata_file("CT_small.dcm")).parent / "dicomdirtests/98892001/CT5N"
    outcomes = ingest_dicom(dicom, "ds-ct", root, KEY, show_progress=False)
    assert [o.error for o in outcomes] == [None]
    reference = sc.datasets.pbmc68k_reduced()
    ad.AnnData(reference.raw.X, obs=reference.obs[[]], var=reference.raw.var[[]]).write_h5ad(
        tmp_path / "counts.h5ad"
    )
    (outcome,) = ingest_matrices(
        [tmp_path / "counts.h5ad"], "ds-rna", root, KEY, show_progress=False
    )
    assert outcome.error is None
    found = run_in_project_session(enclave, USER, PROJECT, ["ds-ct", "ds-rna"], IN_SESSION)
    assert sorted(found["datasets"]) == ["ds-ct", "ds-rna"]
    lowest = pydicom.dcmread(dicom / "3353")
    expected = lowest.pixel_array * float(lowest.RescaleSlope) + float(lowest.RescaleIntercept)
    np.testing.assert_array_equal(np.array(found["volume"]), expected)
    assert found["units"] == "HU" and found["spacing"][0] == pytest.approx(2.5)
    assert found["lazy"].startswith("dask"), "X stays lazy in the session"
    assert found["pcs"] == [700, 10] and 0 < found["variance_ratio"] < 1
