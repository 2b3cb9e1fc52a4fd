"""The library researchers import in their notebook sessions (`import enclave`).

    enclave.datasets()                        what this session's project may read
    enclave.dataset("ds-id").objects          the objects of one dataset
    s = enclave.open_slide("ds-id/slide-id")  a pathology slide: levels, regions, tiles
    enclave.tile_dataset(["ds-id/slide-id"], labels)   tissue tiles for a PyTorch DataLoader
    v = enclave.open_volume("ds-id/series")   a CT or MR volume (z, y, x) in millimetres
    a = enclave.open_matrix("ds-id/name")     a genomic matrix: AnnData with a lazy X
    cdm = enclave.open_omop("ds-id/cdm")      medical records (OMOP CDM): DuckDB, read-only
    g = enclave.open_genotypes("ds-id/calls", region="chr20:1-2000000")
                                              genotypes (VCF Zarr): xarray, for sgkit
    enclave.genotype_stats(g)                 sgkit's variant and sample QC, in one pass
    enclave.omop.Cohort(cdm, ...)             cohorts from concept sets and criteria
    enclave.persons()                         who is in which object (pseudonym, kind)
    p = enclave.person("ENC...")              one person's records, volumes, slides, genome, cells
    client = enclave.dask_client()            a Dask cluster of this session's project
    enclave.view(s)                           napari, at physical scale
    enclave.request_export(["results/t.csv"], justification="...")   ask for files to leave
    enclave.request_package("lifelines", "why")   ask for a package pip may then install
    enclave.submit_job("train.ipynb", profile="gpu")  run it apart from the session
    enclave.jobs()                            the project's jobs and their places in the queue

Readers load their libraries on first use, so `import enclave` stays quick.
"""

from __future__ import annotations

from typing import Any

from .airlock import ExportError, export_requests, request_export
from .catalog import CatalogError, Dataset, dataset, datasets
from .compute import ClusterUnavailable, dask_client
from .jobs import (
    JobError,
    cancel_job,
    job,
    job_parameters,
    job_profiles,
    jobs,
    submit_job,
    wait_for_job,
)
from .packages import PackageRequestError, package_requests, request_package
from .persons import Person, person, persons

__version__ = "0.1.0"
__all__ = [
    "CatalogError",
    "ClusterUnavailable",
    "Dataset",
    "ExportError",
    "JobError",
    "PackageRequestError",
    "Person",
    "cancel_job",
    "dask_client",
    "dataset",
    "datasets",
    "export_requests",
    "genotype_stats",
    "job",
    "job_parameters",
    "job_profiles",
    "jobs",
    "open_genotypes",
    "open_matrix",
    "open_omop",
    "open_slide",
    "open_volume",
    "package_requests",
    "person",
    "persons",
    "request_export",
    "request_package",
    "submit_job",
    "tile_dataset",
    "view",
    "wait_for_job",
]


def open_slide(reference, root=None) -> Any:
    """A slide by `dataset-id/object-id`, or a source file or store by path (see `Slide`)."""
    from .slides.slide import open_slide as open_

    return open_(reference, root)


def tile_dataset(slides, labels, size=240, level=0, min_tissue=0.5, root=None) -> Any:
    """The tissue tiles of `slides`, each with the label `labels` gives its person, for a
    PyTorch DataLoader (see `enclave.slides.training`)."""
    from .slides.training import TileDataset

    return TileDataset(slides, labels, size, level, min_tissue, root)


def open_volume(reference, root=None) -> Any:
    """A volume by `dataset-id/object-id`, or a store by path: an xarray DataArray (z, y, x)."""
    from .volumes.volume import open_volume as open_

    return open_(reference, root)


def open_matrix(reference, root=None, rows_per_block=None) -> Any:
    """A matrix by `dataset-id/object-id`, or a store by path: AnnData, X dask-backed by rows."""
    from .matrices.matrix import open_matrix as open_

    return open_(reference, root, rows_per_block)


def open_omop(reference, root=None, memory_limit=None) -> Any:
    """Medical records by `dataset-id/object-id`: a read-only DuckDB connection, a view per
    OMOP CDM table (see `enclave.omop`)."""
    from .omop.reading import open_omop as open_

    return open_(reference, root, memory_limit)


def open_genotypes(reference, root=None, region=None) -> Any:
    """Genotypes by `dataset-id/object-id`, or a store by path: an xarray Dataset in VCF Zarr's
    and sgkit's names, Dask-backed; `region` ('chr20:1-2000000') reads that region's chunks."""
    from .genotypes.reading import open_genotypes as open_

    return open_(reference, root, region)


def genotype_stats(genotypes) -> Any:
    """sgkit's `variant_stats` and `sample_stats` of `genotypes` (from `open_genotypes`), the
    same variables and values, read in one pass (see `enclave.genotypes.qc`)."""
    from .genotypes.qc import genotype_stats as stats

    return stats(genotypes)


def view(item, **options) -> Any:
    """Show a slide or volume in napari at physical scale (inline when there is no screen)."""
    from .viewer import view as show

    return show(item, **options)
