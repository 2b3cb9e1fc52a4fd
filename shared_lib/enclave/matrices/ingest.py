"""`enclave dataset ingest matrix`: .h5ad files, 10x Genomics HDF5 files and Matrix Market
folders into a dataset of AnnData stores.

Each source is streamed into a staging folder a block of cells at a time (never whole in
memory) and registered only once complete. obs columns named on the command line (sample or
donor ids) are replaced by keyed pseudonyms; columns whose names look like such ids and were
not named are pointed out. A source that cannot be read is reported by name and the others go
on.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from importlib import metadata
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from ..catalog import CatalogError, object_id_for
from ..pseudonyms import Pseudonymizer
from ..registration import FAILED, DatasetWriter, Outcome, file_sha256, tree_digest
from .sources import MatrixError, MatrixSource, open_source
from .store import write_anndata

STORE_SUFFIX = ".zarr"
TOOLS = ("enclave", "anndata", "zarr", "h5py", "scipy")
LOOKS_IDENTIFYING = re.compile(r"(sample|donor|patient|subject|individual)", re.IGNORECASE)


def pseudonymise_obs(
    path: Path, source: MatrixSource, columns: list[str], pseudonyms: Pseudonymizer | None
) -> list[str]:
    """Replace the values of `columns` of obs by keyed pseudonyms (`pseudonyms` is None only
    when there are no columns); the columns replaced."""
    replaced = []
    for column in columns:
        if column not in source.obs.columns:
            known = ", ".join(map(str, source.obs.columns)) or "none"
            raise MatrixError(f"{path}: no obs column {column!r} (its columns: {known})")
        values = source.obs[column]
        if isinstance(values.dtype, pd.CategoricalDtype):
            mapping = {c: pseudonyms.patient(str(c)) for c in values.cat.categories}
            source.obs[column] = values.cat.rename_categories(mapping)
        else:
            source.obs[column] = values.map(lambda v: pseudonyms.patient(str(v)))
        replaced.append(column)
    return replaced


def ingest_matrix(
    writer: DatasetWriter,
    path: Path,
    pseudonymise: list[str],
    pseudonyms: Pseudonymizer | None,
    show_progress: bool,
    report: Callable[[str], object],
) -> str:
    """Convert and register one source; its object id. Raises MatrixError or CatalogError."""
    object_id = object_id_for(path.name.split(".")[0])
    if writer.has(object_id):
        raise CatalogError(f"{path}: dataset {writer.id!r} already has an object {object_id!r}")
    with writer.staging(object_id) as staging:
        source = open_source(path, spill_dir=staging)
        try:
            replaced = pseudonymise_obs(path, source, pseudonymise, pseudonyms)
            for column in source.obs.columns:
                if LOOKS_IDENTIFYING.search(str(column)) and column not in replaced:
                    report(
                        f"note    {path}: obs column {column!r} looks like an identifier; "
                        f"--pseudonymise {column} replaces it"
                    )
            target = staging / (object_id + STORE_SUFFIX)
            total = sum(m.shape[0] for m in source.matrices.values())
            with tqdm(
                total=total, unit="rows", desc=object_id, disable=not show_progress, leave=False
            ) as bar:
                try:
                    described = write_anndata(target, source, bar.update)
                except Exception as error:  # h5py raises many kinds for damaged data
                    raise MatrixError(
                        f"{path}: reading failed ({type(error).__name__}: {error})"
                    ) from None
        finally:
            source.close()
        entry = {
            "kind": "matrix",
            "format": "anndata-zarr",
            **described,
            "source": {
                "name": path.name,
                "checksum": tree_digest(path) if path.is_dir() else file_sha256(path),
            },
            "deidentification": {"obs_columns_pseudonymised": replaced},
            "tools": {name: metadata.version(name) for name in TOOLS},
        }
        writer.register(object_id, target, object_id + STORE_SUFFIX, entry)
    return object_id


def ingest_matrices(
    sources: Iterable[Path],
    dataset_id: str,
    data_root: Path,
    key: bytes | None,
    pseudonymise: Iterable[str] = (),
    show_progress: bool = True,
    report: Callable[[str], object] = print,
) -> list[Outcome]:
    """Ingest every source, reporting each; one outcome per source. `key` is needed only when
    there are columns to pseudonymise."""
    columns = list(pseudonymise)
    pseudonyms = Pseudonymizer(key) if columns else None
    writer = DatasetWriter(data_root, dataset_id, kind="matrices")
    outcomes = []
    for path in map(Path, sources):
        try:
            object_id = ingest_matrix(writer, path, columns, pseudonyms, show_progress, report)
        except (MatrixError, CatalogError, OSError) as error:
            report(f"{FAILED}{error}")
            outcomes.append(Outcome(path, error=str(error)))
        else:
            report(f"ok      {path} → {dataset_id}/{object_id}")
            outcomes.append(Outcome(path, object_id=object_id))
    failed = sum(1 for o in outcomes if o.error)
    report(f"{len(outcomes) - failed} matrix source(s) ingested into {dataset_id}, {failed} failed")
    return outcomes
