"""`enclave.genotype_stats`: sgkit's per-variant and per-sample QC (`variant_stats` and
`sample_stats`: calls, homozygous and heterozygous counts, call rates, allele counts and
frequencies) with the same names, types and values, from one read of each genotype chunk.

sgkit counts each chunk's calls once per direction and, for the samples, on a transposed copy
of the chunk; here two compiled passes over the chunk as it is stored (variants outer, samples
inner) keep the variants' and the samples' counts, and the chunk is read and decompressed once
for both. Lazy and Dask-backed as sgkit's results, so they run locally or on the project's
cluster.
"""

from __future__ import annotations

import dask.array as da
import numba
import numpy as np
import xarray as xr

HOM_REF, HOM_ALT, HET = 0, 1, 2  # sgkit's order of genotype categories


@numba.njit(cache=True, nogil=True, inline="always")
def _category(genotypes, variant, sample) -> int:
    """A call's category as sgkit classifies it: -1 missing (any allele missing), HOM_REF,
    HOM_ALT (all alleles the same, not the reference) or HET."""
    first = genotypes[variant, sample, 0]
    category = min(first, 1)
    for slot in range(1, genotypes.shape[2]):
        if category < 0:
            break
        allele = genotypes[variant, sample, slot]
        if allele != first:
            category = HET
        if allele < 0:
            category = -1
    return category


@numba.njit(cache=True, nogil=True)
def _variant_counts(genotypes, alleles: int):
    """Per variant of a chunk: its calls by category, then each allele's count among the
    alleles called (a partly missing call's called alleles included, as sgkit counts)."""
    out = np.zeros((genotypes.shape[0], 1, 3 + alleles), np.int64)
    for variant in range(genotypes.shape[0]):
        for sample in range(genotypes.shape[1]):
            category = _category(genotypes, variant, sample)
            if category >= 0:
                out[variant, 0, category] += 1
            for slot in range(genotypes.shape[2]):
                allele = genotypes[variant, sample, slot]
                if allele >= alleles:
                    raise ValueError("call_genotype holds an allele past the variant's alleles")
                if allele >= 0:
                    out[variant, 0, 3 + allele] += 1
    return out


@numba.njit(cache=True, nogil=True)
def _sample_counts(genotypes):
    """Per sample of a chunk: its calls by category."""
    out = np.zeros((1, genotypes.shape[1], 3), np.int64)
    for variant in range(genotypes.shape[0]):
        for sample in range(genotypes.shape[1]):
            category = _category(genotypes, variant, sample)
            if category >= 0:
                out[0, sample, category] += 1
    return out


def genotype_stats(dataset: xr.Dataset) -> xr.Dataset:
    """`dataset` with sgkit's `variant_stats` and `sample_stats` variables added, computed
    from `call_genotype` alone (a mixed-ploidy dataset is refused, as sgkit refuses it)."""
    calls = dataset["call_genotype"]
    if calls.attrs.get("mixed_ploidy", False):
        raise ValueError("call_genotype: mixed ploidy, which sgkit's statistics do not take")
    genotypes = da.asarray(calls.data).rechunk({2: -1})
    alleles = dataset.sizes["alleles"]
    by_variant = da.map_blocks(
        _variant_counts,
        genotypes,
        alleles,
        dtype=np.int64,
        chunks=(genotypes.chunks[0], (1,) * genotypes.numblocks[1], (3 + alleles,)),
    ).sum(axis=1)
    by_sample = da.map_blocks(
        _sample_counts,
        genotypes,
        dtype=np.int64,
        chunks=((1,) * genotypes.numblocks[0], genotypes.chunks[1], (3,)),
    ).sum(axis=0)
    variants, samples, _ = genotypes.shape
    allele_count = by_variant[:, 3:].astype(np.uint64)
    allele_total = allele_count.sum(axis=1).astype(int)
    stats = {
        **_category_stats("variant", ("variants",), by_variant[:, :3], samples),
        "variant_allele_count": (("variants", "alleles"), allele_count),
        "variant_allele_total": (("variants",), allele_total),
        "variant_allele_frequency": (
            ("variants", "alleles"),
            allele_count.astype(float) / allele_total.astype(float)[:, None],
        ),
        **_category_stats("sample", ("samples",), by_sample, variants),
    }
    return dataset.assign(stats)


def _category_stats(prefix: str, dims: tuple[str], counts, of: int) -> dict:
    """sgkit's variables of calls by category: called, call rate (of `of` calls), het, hom
    ref, hom alt, non ref."""
    called = counts.sum(axis=1)
    values = {
        "n_called": called,
        "call_rate": called.astype(float) / float(of),
        "n_het": counts[:, HET],
        "n_hom_ref": counts[:, HOM_REF],
        "n_hom_alt": counts[:, HOM_ALT],
        "n_non_ref": called - counts[:, HOM_REF],
    }
    return {f"{prefix}_{name}": (dims, array) for name, array in values.items()}
