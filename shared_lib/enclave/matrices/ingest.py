"""`enclave dataset ingest matrix`: .h5ad files, 10x Genomics HDF5 files and Matrix Market
folders into a dataset of AnnData stores.

Each source is streamed into a staging folder a block of cells at a time (never whole in
memory) and registered only once complete. obs columns named on the command line (sample or
donor ids) are replaced by keyed pseudonyms; columns whose names look like such ids and were
not named are pointed out. A manifest names the cells' persons, by the source's file name (all
its cells one person's) or by the values of a sample column: their pseudonyms go into obs as
`person`. A source that cannot be read is reported by name and the others go
on.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from ..catalog import CatalogError, object_id_for
from ..persons import PERSON_COLUMN, SourceManifest
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


@dataclass(frozen=True)
class Persons:
    """Where a matrix's persons come from: a manifest, by the source's file name or, with
    `sample_column`, by that obs column's values."""

    manifest: SourceManifest
    sample_column: str | None = None


def add_persons_column(
    path: Path, source: MatrixSource, persons: Persons, pseudonyms: Pseudonymizer
) -> list[str]:
    """Put each cell's person (pseudonym) in obs as `person`, as `persons.manifest` names them;
    the persons."""
    obs, column = source.obs, persons.sample_column
    if PERSON_COLUMN in obs.columns:
        raise MatrixError(f"{path}: obs already has a column {PERSON_COLUMN!r}")
    if column is None:
        named = persons.manifest.require(str(path), path.name, str(path))
        obs[PERSON_COLUMN] = pseudonyms.patient(named.patient_id)
        return [obs[PERSON_COLUMN].iloc[0]] if len(obs) else []
    if column not in obs.columns:
        known = ", ".join(map(str, obs.columns)) or "none"
        raise MatrixError(f"{path}: no obs column {column!r} (its columns: {known})")
    samples = obs[column].astype(str)
    missing = sorted(s for s in samples.unique() if persons.manifest.find(s) is None)
    if missing:
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise MatrixError(
            f"{path}: samples {', '.join(missing[:3])}{more} of obs column {column!r}: the "
            f"manifest {persons.manifest.path} does not name them"
        )
    by_sample = {
        s: pseudonyms.patient(persons.manifest.find(s).patient_id) for s in samples.unique()
    }
    obs[PERSON_COLUMN] = pd.Categorical(samples.map(by_sample))
    return sorted(set(by_sample.values()))


def ingest_matrix(
    writer: DatasetWriter,
    path: Path,
    pseudonymise: list[str],
    pseudonyms: Pseudonymizer | None,
    persons: Persons | None,
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
            people = add_persons_column(path, source, persons, pseudonyms) if persons else []
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
        writer.register(object_id, target, object_id + STORE_SUFFIX, entry, people)
    return object_id


def ingest_matrices(
    sources: Iterable[Path],
    dataset_id: str,
    data_root: Path,
    key: bytes | None,
    pseudonymise: Iterable[str] = (),
    show_progress: bool = True,
    report: Callable[[str], object] = print,
    manifest: SourceManifest | None = None,
    sample_column: str | None = None,
) -> list[Outcome]:
    """Ingest every source, reporting each; one outcome per source. A `manifest` names the
    cells' persons, by file name or by the values of obs column `sample_column`. `key` is
    needed only when there are columns to pseudonymise or a manifest."""
    columns = list(pseudonymise)
    pseudonyms = Pseudonymizer(key) if columns or manifest else None
    persons = Persons(manifest, sample_column) if manifest else None
    writer = DatasetWriter(data_root, dataset_id, kind="matrices")
    outcomes = []
    for path in map(Path, sources):
        try:
            object_id = ingest_matrix(
                writer, path, columns, pseudonyms, persons, show_progress, report
            )
        except (MatrixError, CatalogError, OSError) as error:
            report(f"{FAILED}{error}")
            outcomes.append(Outcome(path, error=str(error)))
        else:
            report(f"ok      {path} → {dataset_id}/{object_id}")
            outcomes.append(Outcome(path, object_id=object_id))
    failed = sum(1 for o in outcomes if o.error)
    report(f"{len(outcomes) - failed} matrix source(s) ingested into {dataset_id}, {failed} failed")
    return outcomes
