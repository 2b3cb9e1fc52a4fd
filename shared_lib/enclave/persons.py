"""One person across the commons' data types.

Every ingest gives a person the keyed pseudonym of their patient id under the commons' key, so
a person's records, images, slides, genome and cells carry the same pseudonym. Where a source
does not name its person (a slide, whose label is dropped; a matrix whose donors are in a
sample sheet), a manifest does (`SourceManifest`). Each dataset records the persons of its
objects in `persons.parquet` beside `dataset.json`; `persons()` gathers them over the datasets
a session may read and `person(pid)` opens one person's data with the library's own readers.
"""

from __future__ import annotations

import csv
import os
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .catalog import CatalogError, Dataset, data_root, datasets

PERSONS = "persons.parquet"
PERSON_COLUMN = "person"  # the pseudonym column a manifest adds to a matrix's obs
PERSONS_COLUMNS = ("person", "object", "kind")


@dataclass(frozen=True)
class ManifestEntry:
    """A source's person (their patient id, before pseudonymising) and its attributes."""

    patient_id: str
    attributes: dict[str, str] = field(default_factory=dict)


class SourceManifest:
    """`--manifest FILE.csv`: a header row with `source` (a source file's name, or a sample's
    id) and `patient_id`, and any other columns as attributes of the source (stain, specimen,
    body_site...). Read whole and checked before anything is ingested."""

    def __init__(self, path: Path):
        self.path = Path(path)
        try:
            with self.path.open(newline="", encoding="utf-8-sig") as stream:
                rows = list(csv.reader(stream))
        except OSError as error:
            raise CatalogError(f"manifest {self.path}: {error.strerror}") from None
        except (UnicodeDecodeError, csv.Error) as error:
            raise CatalogError(f"manifest {self.path}: not CSV text ({error})") from None
        if not rows:
            raise CatalogError(f"manifest {self.path}: empty (it needs source,patient_id)")
        header = [name.strip() for name in rows[0]]
        for needed in ("source", "patient_id"):
            if needed not in header:
                raise CatalogError(
                    f"manifest {self.path}: no column {needed!r} (its columns: {', '.join(header)})"
                )
        self.entries: dict[str, ManifestEntry] = {}
        for number, row in enumerate(rows[1:], start=2):
            if not any(cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                raise CatalogError(
                    f"manifest {self.path}, line {number}: {len(row)} fields, the header has "
                    f"{len(header)}"
                )
            values = {name: cell.strip() for name, cell in zip(header, row, strict=True)}
            source, patient = values.pop("source"), values.pop("patient_id")
            for name, value in (("source", source), ("patient_id", patient)):
                if not value:
                    raise CatalogError(f"manifest {self.path}, line {number}: {name} is empty")
            entry = ManifestEntry(patient, {k: v for k, v in values.items() if v})
            known = self.entries.get(source)
            if known is not None and known != entry:
                raise CatalogError(
                    f"manifest {self.path}, line {number}: source {source!r} is named again "
                    "with another patient or attributes"
                )
            self.entries[source] = entry

    def find(self, *names: str) -> ManifestEntry | None:
        """The entry of the first of `names` (a file name, a sample id...) the manifest has."""
        return next((self.entries[n] for n in names if n in self.entries), None)

    def require(self, what: str, *names: str) -> ManifestEntry:
        """The entry of one of `names`; a CatalogError naming `what` when none is there."""
        found = self.find(*names)
        if found is None:
            raise CatalogError(f"{what}: the manifest {self.path} does not name it")
        return found


def add_persons(folder: Path, object_id: str, kind: str, pseudonyms: Iterable[str]) -> None:
    """Add one object's persons to the dataset's `persons.parquet` (replaced atomically).
    Called under the dataset's lock before the object is entered in `dataset.json`: rows of an
    object never registered are ignored by the readers."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    people = sorted(set(pseudonyms))
    if not people:
        return
    schema = _schema()
    path = folder / PERSONS
    table = pa.table(
        {"person": people, "object": [object_id] * len(people), "kind": [kind] * len(people)},
        schema=schema,
    )
    if path.is_file():
        known = pq.read_table(path, schema=schema)
        table = pa.concat_tables([known.filter(pc.field("object") != object_id), table])
    temporary = folder / f".{PERSONS}.{secrets.token_hex(4)}"
    pq.write_table(table, temporary)
    with temporary.open("rb") as stream:
        os.fsync(stream.fileno())
    os.replace(temporary, path)


def persons(root: Path | None = None):
    """A table of the persons in the datasets this session may read: one row per person and
    object, with the dataset and the object's kind (a pandas DataFrame)."""
    import pandas as pd
    import pyarrow.parquet as pq

    base = root if root is not None else data_root()
    frames = []
    for dataset_id in datasets(base):
        dataset = Dataset(dataset_id, base)
        path = dataset.folder / PERSONS
        if not path.is_file():
            continue
        rows = pq.read_table(path, schema=_schema()).to_pandas()
        registered = set(dataset.manifest.get("objects", {}))
        rows = rows[rows["object"].isin(registered)]
        frames.append(rows.assign(dataset=dataset_id)[["person", "dataset", "object", "kind"]])
    if not frames:
        return pd.DataFrame(columns=["person", "dataset", "object", "kind"])
    return pd.concat(frames, ignore_index=True).sort_values(["person", "dataset", "object"])


def _schema():
    import pyarrow as pa

    return pa.schema([(name, pa.string()) for name in PERSONS_COLUMNS])


@dataclass
class Person:
    """One person's data in the datasets this session may read, by `dataset/object`: medical
    records (each OMOP table's rows of the person), volumes (DICOM series), slides, genotypes
    (the person's sample) and cells (the person's cells of a matrix)."""

    id: str
    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    volumes: dict[str, Any] = field(default_factory=dict)
    slides: dict[str, Any] = field(default_factory=dict)
    genotypes: dict[str, Any] = field(default_factory=dict)
    cells: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        parts = {
            name: len(getattr(self, name))
            for name in ("records", "volumes", "slides", "genotypes", "cells")
        }
        held = ", ".join(f"{n} {name}" for name, n in parts.items() if n) or "nothing"
        return f"<Person {self.id}: {held}>"


def person(pid: str, root: Path | None = None) -> Person:
    """Person `pid` (their pseudonym) with their data in every dataset this session may read;
    a CatalogError when none holds them."""
    base = root if root is not None else data_root()
    table = persons(base)
    rows = table[table["person"] == pid]
    if rows.empty:
        raise CatalogError(f"no dataset this session may read holds person {pid!r}")
    found = Person(pid)
    for row in rows.itertuples():
        reference = f"{row.dataset}/{row.object}"
        opened = _OPENERS.get(row.kind)
        if opened is None:
            raise CatalogError(f"{reference}: objects of kind {row.kind!r} cannot be opened")
        attribute, open_ = opened
        getattr(found, attribute)[reference] = open_(reference, base, pid)
    return found


def _records(reference: str, root: Path, pid: str) -> dict:
    """Each OMOP table's rows of the person (tables without any left out)."""
    from .omop.cdm import tables
    from .omop.reading import open_omop

    with open_omop(reference, root) as cdm:
        found = cdm.execute(
            "SELECT person_id FROM person WHERE person_source_value = ?", [pid]
        ).fetchone()
        if found is None:
            return {}
        rows = {}
        for table, columns in tables().items():
            if not any(c.name == "person_id" for c in columns):
                continue
            frame = cdm.execute(f'SELECT * FROM "{table}" WHERE person_id = ?', [found[0]]).df()
            if not frame.empty:
                rows[table] = frame
        return rows


def _volume(reference: str, root: Path, _pid: str):
    from .volumes.volume import open_volume

    return open_volume(reference, root)


def _slide(reference: str, root: Path, _pid: str):
    from .slides.slide import open_slide

    return open_slide(reference, root)


def _genotypes(reference: str, root: Path, pid: str):
    """The person's sample: the store's Dataset cut to it (samples of length 1)."""
    import numpy as np

    from .genotypes.reading import open_genotypes

    genotypes = open_genotypes(reference, root)
    return genotypes.isel(samples=np.flatnonzero(genotypes["sample_id"].values == pid))


def _cells(reference: str, root: Path, pid: str):
    """The person's cells of a matrix (by the obs column a manifest added)."""
    from .matrices.matrix import open_matrix

    cells = open_matrix(reference, root)
    return cells[(cells.obs[PERSON_COLUMN] == pid).to_numpy()]


_OPENERS = {
    "omop": ("records", _records),
    "volume": ("volumes", _volume),
    "slide": ("slides", _slide),
    "genotypes": ("genotypes", _genotypes),
    "matrix": ("cells", _cells),
}
