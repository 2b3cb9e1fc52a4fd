"""Out-of-core preprocessing: on a real matrix that fits in memory, the lazy pipeline gives
in-memory scanpy's results; on a matrix three times the memory a process is allowed (a cgroup
limit, enforced by the kernel), it runs to the end, where loading the matrix is killed."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from pathlib import Path

import anndata as ad
import numpy as np
import pytest
import scanpy as sc
import zarr

import enclave
from enclave.matrices.analysis import preprocess
from enclave.matrices.sources import open_source
from enclave.matrices.store import write_anndata
from enclave_hub.sandbox.cgroup import Limits, SessionCgroup

BENCH = Path(__file__).resolve().parents[1] / "bench"
CAP = 1 << 30


@pytest.fixture(scope="module")
def counts(tmp_path_factory) -> tuple[ad.AnnData, Path]:
    """pbmc68k_reduced's raw matrix (700 cells, 765 genes), in memory and as a store."""
    reference = sc.datasets.pbmc68k_reduced()
    adata = ad.AnnData(reference.raw.X.copy(), obs=reference.obs[[]], var=reference.raw.var[[]])
    folder = tmp_path_factory.mktemp("pbmc")
    adata.write_h5ad(folder / "counts.h5ad")
    source = open_source(folder / "counts.h5ad")
    write_anndata(folder / "counts.zarr", source)
    source.close()
    return adata, folder / "counts.zarr"


def test_the_lazy_pipeline_gives_in_memory_scanpys_results(counts):
    in_memory, store = counts
    lazy = enclave.open_matrix(store, rows_per_block=128)
    assert lazy.X.numblocks[0] == 6, "several blocks of rows, never the whole matrix at once"
    preprocess(lazy, n_top_genes=300, n_comps=20)

    expected = in_memory.copy()
    sc.pp.normalize_total(expected, target_sum=1e4)
    sc.pp.log1p(expected)
    sc.pp.highly_variable_genes(expected, n_top_genes=300)
    np.testing.assert_allclose(lazy.X.compute().toarray(), expected.X.toarray(), rtol=1e-5)
    assert list(lazy.var.highly_variable) == list(expected.var.highly_variable)
    variable = expected[:, expected.var.highly_variable].copy()
    sc.pp.scale(variable)
    sc.pp.pca(variable, n_comps=20)

    ours, theirs = lazy.uns["pca"], variable.uns["pca"]
    np.testing.assert_allclose(ours["variance"], theirs["variance"], rtol=1e-5)
    np.testing.assert_allclose(ours["variance_ratio"], theirs["variance_ratio"], rtol=1e-5)
    signs = np.sign(np.sum(lazy.obsm["X_pca"] * variable.obsm["X_pca"], axis=0))
    np.testing.assert_allclose(lazy.obsm["X_pca"] * signs, variable.obsm["X_pca"], atol=1e-3)
    loadings = lazy.varm["PCs"][expected.var.highly_variable.to_numpy()]
    np.testing.assert_allclose(loadings * signs, variable.varm["PCs"], atol=1e-4)


PIPELINE = """
import json, sys
import numpy as np
import enclave
from enclave.matrices.analysis import preprocess
adata = enclave.open_matrix(sys.argv[1])
preprocess(adata, n_top_genes=1000, n_comps=20)
pcs = adata.obsm["X_pca"]
print(json.dumps({"shape": list(pcs.shape), "finite": bool(np.isfinite(pcs).all()),
                  "variance": adata.uns["pca"]["variance"].tolist()}))
"""

LOAD_WHOLE = """
import sys
import anndata
anndata.read_zarr(sys.argv[1])
print("loaded")
"""


def _run_capped(script: str, store: Path) -> subprocess.CompletedProcess:
    cgroup = SessionCgroup(f"matrix-test-{secrets.token_hex(4)}")
    cgroup.create(Limits(memory_bytes=CAP, cpus=2, pids=512))
    try:
        return subprocess.run(
            [sys.executable, "-c", script, str(store)],
            capture_output=True,
            text=True,
            preexec_fn=cgroup.join,
            timeout=600,
        )
    finally:
        cgroup.remove()


@pytest.mark.slow
def test_a_matrix_three_times_the_memory_cap_goes_through_the_pipeline(tmp_path):
    sys.path.insert(0, str(BENCH))
    from synthetic_matrix import write_synthetic

    store = tmp_path / "large.zarr"
    write_synthetic(store, cells=1_300_000, genes=20_000, reads=600, period=50_000)
    group = zarr.open_group(store, mode="r")
    cells, nnz = group["X"].attrs["shape"][0], int(group["X/indptr"][-1])
    csr_bytes = nnz * (4 + 4) + (cells + 1) * 8  # in memory: float32 values, int32 indices
    assert csr_bytes > 3 * CAP, f"the matrix ({csr_bytes >> 20} MiB) is not 3x the cap"

    done = _run_capped(PIPELINE, store)
    assert done.returncode == 0, f"killed or failed under the cap: {done.stderr[-2000:]}"
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["shape"] == [1_300_000, 20] and result["finite"]
    assert result["variance"] == sorted(result["variance"], reverse=True)

    whole = _run_capped(LOAD_WHOLE, store)
    assert whole.returncode == -9 and "loaded" not in whole.stdout, (
        "loading the whole matrix should be killed by the same cap"
    )
