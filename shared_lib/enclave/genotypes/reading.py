"""`enclave.open_genotypes`: a VCF Zarr store as an xarray Dataset in VCF Zarr's and sgkit's
names, every array Dask-backed in the store's chunks, so sgkit's functions run on it as it is,
locally or on the project's Dask cluster.

A region (`contig:start-end`, 1-based and inclusive as bcftools reads it) is found through the
store's region index: only the positions of the chunks that overlap it are read to cut it
exactly, and the Dataset returned reads no other chunk.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr

from ..catalog import CatalogError, locate

REGION = re.compile(r"(?P<contig>[^:]+)(:(?P<start>[\d,]+)(?P<open>-)?(?P<end>[\d,]+)?)?")
WHOLE = np.iinfo(np.int64).max
# The region index's columns (bio2zarr): chunk, contig, first position, last position, last
# position a variant covers, variants.
CHUNK, CONTIG, FIRST, _, MAX_END, _ = range(6)


@dataclass(frozen=True)
class Region:
    """`contig`, `contig:position`, `contig:start-` or `contig:start-end`, as bcftools."""

    contig: str
    start: int
    end: int

    @classmethod
    def parse(cls, text: str) -> Region:
        match = REGION.fullmatch(text.strip())
        if not match:
            raise CatalogError(f"region {text!r}: not contig, contig:start or contig:start-end")
        start = int(match["start"].replace(",", "")) if match["start"] else 1
        if match["end"]:
            end = int(match["end"].replace(",", ""))
        else:
            end = WHOLE if match["open"] or not match["start"] else start
        if end < start:
            raise CatalogError(f"region {text!r}: ends before it starts")
        return cls(match["contig"], start, end)


def open_genotypes(
    reference: str | os.PathLike, root: Path | None = None, region: str | None = None
) -> xr.Dataset:
    """The genotypes `reference` names (`dataset-id/object-id`, or a store by path), all of
    them or those of `region` ('chr20', 'chr20:1000000-2000000')."""
    path, _ = locate(reference, "genotypes", root)
    try:
        dataset = xr.open_zarr(path, concat_characters=False)
    except (OSError, KeyError, ValueError) as error:
        raise CatalogError(f"{path}: not a readable VCF Zarr store ({error})") from None
    if "call_genotype" in dataset and "call_genotype_mask" not in dataset:
        dataset["call_genotype_mask"] = dataset["call_genotype"] < 0
    return dataset if region is None else select_region(dataset, region)


def select_region(dataset: xr.Dataset, region: str) -> xr.Dataset:
    """The variants of `dataset` in `region`, reading the positions of the chunks that overlap
    it only."""
    wanted = Region.parse(region)
    contigs = [str(c) for c in dataset["contig_id"].values]
    if wanted.contig not in contigs:
        raise CatalogError(f"region {region!r}: no contig {wanted.contig!r} in this store")
    contig = contigs.index(wanted.contig)
    index = dataset["region_index"].values
    positions = dataset["variant_position"]
    overlapping = index[
        (index[:, CONTIG] == contig)
        & (index[:, FIRST] <= wanted.end)
        & (index[:, MAX_END] >= wanted.start)
    ]
    if len(overlapping) == 0:
        return dataset.isel(variants=slice(0, 0))
    bounds = np.cumsum((0, *positions.chunks[0]))
    first, last = int(overlapping[:, CHUNK].min()), int(overlapping[:, CHUNK].max())
    window = slice(int(bounds[first]), int(bounds[last + 1]))
    near = dataset.isel(variants=window)
    ends = near["variant_position"].values + _lengths(near) - 1
    keep = (
        (near["variant_contig"].values == contig)
        & (near["variant_position"].values <= wanted.end)
        & (ends >= wanted.start)
    )
    return near.isel(variants=np.flatnonzero(keep))


def _lengths(dataset: xr.Dataset) -> np.ndarray:
    if "variant_length" in dataset:
        return dataset["variant_length"].values
    return np.ones(dataset.sizes["variants"], dtype=np.int64)
