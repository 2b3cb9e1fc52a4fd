"""`enclave.genotype_stats` against sgkit's own `variant_stats` and `sample_stats`: every
variable, its type and its values, on calls of every kind chunked both ways, and on the sample
files ingested."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import sgkit
import xarray as xr

import enclave
from enclave.genotypes.ingest import ingest_genotypes
from enclave.genotypes.reading import open_genotypes

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "data" / "genotypes"


def _assert_equals_sgkit(dataset: xr.Dataset) -> None:
    ours = enclave.genotype_stats(dataset).compute()
    theirs = sgkit.sample_stats(sgkit.variant_stats(dataset)).compute()
    added = [name for name in theirs.data_vars if name not in dataset.data_vars]
    assert len(added) == 15 and set(added) <= set(ours.data_vars)
    for name in added:
        assert ours[name].dims == theirs[name].dims, name
        assert ours[name].dtype == theirs[name].dtype, name
        np.testing.assert_array_equal(ours[name].values, theirs[name].values, err_msg=name)


def _calls(variants: int, samples: int, ploidy: int, alleles: int, seed: int) -> xr.Dataset:
    """Random calls of up to `alleles` alleles, some wholly and some partly missing, in chunks
    of 37 variants and 11 samples."""
    rng = np.random.default_rng(seed)
    genotypes = rng.integers(0, alleles, (variants, samples, ploidy), dtype=np.int8)
    genotypes[rng.random((variants, samples)) < 0.1] = -1
    genotypes[rng.random((variants, samples, ploidy)) < 0.05] = -1
    genotypes[:3] = 0  # all homozygous reference: a frequency of 1 and of 0
    genotypes[3] = -1  # nothing called: frequencies NaN, as sgkit's
    dataset = xr.Dataset(
        {
            "call_genotype": (("variants", "samples", "ploidy"), genotypes),
            "variant_allele": (("variants", "alleles"), np.full((variants, alleles), "A", "O")),
        }
    )
    return dataset.chunk({"variants": 37, "samples": 11})


@pytest.mark.parametrize(("ploidy", "alleles"), [(2, 2), (2, 4), (1, 2), (3, 3)])
def test_every_statistic_equals_sgkits(ploidy, alleles):
    _assert_equals_sgkit(_calls(200, 50, ploidy, alleles, seed=ploidy * 10 + alleles))


def test_the_sample_vcfs_statistics_equal_sgkits(tmp_path):
    """Multi-allelic sites, phased and missing calls, as ingested."""
    source = SAMPLES / "sample.vcf.gz"
    (outcome,) = ingest_genotypes([source], "ds", tmp_path, b"k" * 32, "calls", False)
    assert outcome.error is None, outcome.error
    _assert_equals_sgkit(open_genotypes("ds/calls", tmp_path))


def test_an_allele_past_the_variants_alleles_is_an_error():
    dataset = _calls(40, 12, 2, 2, seed=1)
    dataset["call_genotype"][5, 3, 1] = 2
    with pytest.raises(ValueError, match="allele past the variant's alleles"):
        enclave.genotype_stats(dataset).compute()


def test_mixed_ploidy_is_refused():
    dataset = _calls(40, 12, 2, 2, seed=2)
    dataset["call_genotype"].attrs["mixed_ploidy"] = True
    with pytest.raises(ValueError, match="mixed ploidy"):
        enclave.genotype_stats(dataset)
