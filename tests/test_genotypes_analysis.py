"""sgkit's analyses on an ingested store, on Enclave's pinned numpy, dask, xarray and zarr (sgkit
is installed without its own caps on them): quality control, PCA and an association test, each
against an independent computation from the source VCF read by cyvcf2."""

from __future__ import annotations

import math

import numpy as np
import pytest
import sgkit
import statsmodels.api as sm
from cyvcf2 import VCF

from enclave.genotypes.ingest import ingest_genotypes
from enclave.genotypes.reading import open_genotypes
from enclave_hub.local.demo_genotypes import write_demo_genotypes
from enclave_hub.local.demo_records import write_demo_records


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> tuple:
    """The demo genotypes, ingested; and their calls as cyvcf2 reads them (variants, samples,
    2), missing as -1."""
    folder = tmp_path_factory.mktemp("analysis")
    source = write_demo_genotypes(write_demo_records(folder / "emr"), folder / "vcf")
    (outcome,) = ingest_genotypes([source], "ds", folder, b"k" * 32, "calls", False)
    assert outcome.error is None
    calls = np.array([[call[:2] for call in record.genotypes] for record in VCF(str(source))])
    return open_genotypes("ds/calls", folder), calls


def _hwe_exact(hets: int, hom_1: int, hom_2: int) -> float:
    """The exact test of Hardy-Weinberg equilibrium (Wigginton, Cutler and Abecasis 2005)."""
    rare = 2 * min(hom_1, hom_2) + hets
    n = hets + hom_1 + hom_2
    probabilities = np.zeros(rare + 1)
    mid = rare * (2 * n - rare) // (2 * n)
    mid += (rare - mid) % 2
    probabilities[mid] = 1.0
    homs_rare, homs_common = (rare - mid) // 2, n - mid - (rare - mid) // 2
    for h in range(mid, 1, -2):
        probabilities[h - 2] = (
            probabilities[h] * h * (h - 1) / (4 * (homs_rare + 1) * (homs_common + 1))
        )
        homs_rare, homs_common = homs_rare + 1, homs_common + 1
    homs_rare, homs_common = (rare - mid) // 2, n - mid - (rare - mid) // 2
    for h in range(mid, rare - 1, 2):
        probabilities[h + 2] = probabilities[h] * 4 * homs_rare * homs_common / ((h + 2) * (h + 1))
        homs_rare, homs_common = homs_rare - 1, homs_common - 1
    probabilities /= probabilities.sum()
    return float(min(1.0, probabilities[probabilities <= probabilities[hets]].sum()))


def test_quality_control_equals_counts_from_the_source(cohort):
    store, calls = cohort
    stats = sgkit.hardy_weinberg_test(sgkit.sample_stats(sgkit.variant_stats(store))).compute()
    called = (calls >= 0).all(axis=2)
    alternate = np.where(called, calls.sum(axis=2), 0)
    np.testing.assert_allclose(stats["variant_call_rate"], called.mean(axis=1))
    np.testing.assert_allclose(
        stats["variant_allele_frequency"][:, 1], alternate.sum(axis=1) / (2 * called.sum(axis=1))
    )
    np.testing.assert_allclose(stats["sample_call_rate"], called.mean(axis=0))
    np.testing.assert_array_equal(stats["sample_n_het"], (called & (alternate == 1)).sum(axis=0))
    for variant in range(0, calls.shape[0], 97):
        counts = [((alternate[variant] == k) & called[variant]).sum() for k in (1, 0, 2)]
        assert math.isclose(
            stats["variant_hwe_p_value"][variant], _hwe_exact(*map(int, counts)), rel_tol=1e-9
        ), variant


def test_pca_equals_the_singular_values_of_the_patterson_scaled_dosages(cohort):
    store, calls = cohort
    complete = (calls >= 0).all(axis=(1, 2))
    pca = sgkit.pca(store.isel(variants=np.flatnonzero(complete)), n_components=4).compute()
    dosage = calls[complete].sum(axis=2).astype(float)  # (variants, samples)
    frequency = dosage.mean(axis=1, keepdims=True) / 2
    scaled = (dosage - 2 * frequency) / np.sqrt(frequency * (1 - frequency))
    singular = np.linalg.svd(scaled.T, compute_uv=False)
    expected_ratio = singular[:4] ** 2 / (singular**2).sum()
    np.testing.assert_allclose(
        pca["sample_pca_explained_variance_ratio"], expected_ratio, rtol=1e-6
    )


def test_association_with_a_covariate_equals_statsmodels(cohort):
    store, calls = cohort
    rng = np.random.default_rng(4)
    age = rng.normal(60, 10, store.sizes["samples"])
    dosage = calls.sum(axis=2).astype(float)
    missing = (calls < 0).any(axis=2)
    dosage[missing] = np.nan
    dosage = np.where(missing, np.nanmean(dosage, axis=1, keepdims=True), dosage)
    trait = 0.4 * dosage[5] + 0.02 * age + rng.normal(0, 1, store.sizes["samples"])
    store = store.assign(
        call_dosage=(("variants", "samples"), dosage),
        sample_age=("samples", age),
        sample_trait=("samples", trait),
    )
    gwas = sgkit.gwas_linear_regression(
        store, dosage="call_dosage", covariates=["sample_age"], traits=["sample_trait"]
    ).compute()
    for variant in (0, 5, 1234):
        fit = sm.OLS(trait, sm.add_constant(np.column_stack([dosage[variant], age]))).fit()
        assert math.isclose(gwas["variant_linreg_beta"][variant, 0], fit.params[1], rel_tol=1e-9)
        assert math.isclose(
            gwas["variant_linreg_p_value"][variant, 0], fit.pvalues[1], rel_tol=1e-6
        )
    assert int(gwas["variant_linreg_p_value"][:, 0].argmin("variants")) == 5
