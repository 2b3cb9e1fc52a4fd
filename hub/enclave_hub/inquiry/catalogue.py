"""The commons' catalogue for the inquiry portal: each dataset with its title, description,
kind, version, objects and persons, and a data dictionary by kind, read from `dataset.json`,
`persons.parquet` and the stores themselves (OMOP tables and their most frequent concepts,
DICOM modalities and body parts, slides by stain and magnification, matrix cells, genes and
obs columns, genotype samples, variants and contigs). Every count of persons in it is shown as
`Disclosure` allows; a dataset's description is kept until its version changes.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from pathlib import Path

import duckdb

from enclave.catalog import DataObject, Dataset, datasets
from enclave.omop.cdm import by_concept
from enclave.persons import PERSONS

from .disclosure import Disclosure

# The domains whose most frequent concepts the dictionary lists: (event table, concept column).
CONCEPT_DOMAINS = {
    "conditions": ("condition_occurrence", "condition_concept_id"),
    "drugs": ("drug_exposure", "drug_concept_id"),
    "measurements": ("measurement", "measurement_concept_id"),
    "procedures": ("procedure_occurrence", "procedure_concept_id"),
}
TOP_CONCEPTS = 10
VOLUME_HEADERS = "headers.json"
BODY_PART = "00180015"  # BodyPartExamined, in DICOM JSON


class Catalogue:
    """The datasets of the data root `root`, described, each kept until its version changes."""

    def __init__(self, root: Path, disclosure: Disclosure):
        self.root = root
        self.disclosure = disclosure
        self._described: dict[str, tuple[object, dict]] = {}
        self._lock = threading.Lock()

    def datasets(self) -> list[dict]:
        """Every dataset's summary: id, title, description, kind, version, objects, persons."""
        return [self._summary(self.dataset(d)) for d in datasets(self.root)]

    def dataset(self, dataset_id: str) -> dict:
        """One dataset, its summary and its data dictionary. CatalogError when absent."""
        found = Dataset(dataset_id, self.root)
        manifest = found.manifest
        version = (manifest.get("version"), manifest.get("updated_at"))
        with self._lock:
            kept = self._described.get(dataset_id)
        if kept is not None and kept[0] == version:
            return kept[1]
        described = self._describe(found, manifest)
        with self._lock:
            self._described[dataset_id] = (version, described)
        return described

    def _summary(self, described: dict) -> dict:
        return {k: v for k, v in described.items() if k != "dictionary"}

    def _describe(self, dataset: Dataset, manifest: dict) -> dict:
        objects = dataset.objects
        by_kind: dict[str, list[DataObject]] = {}
        for item in objects.values():
            by_kind.setdefault(item.kind, []).append(item)
        return {
            "id": dataset.id,
            "title": manifest.get("title") or dataset.id,
            "description": manifest.get("description", ""),
            "kind": manifest.get("kind"),
            "version": manifest.get("version", 0),
            "updated_at": manifest.get("updated_at"),
            "objects": len(objects),
            "persons": self.disclosure.shown(_persons(dataset, set(objects))).as_dict(),
            "dictionary": {
                kind: DESCRIBERS[kind](items, self.disclosure)
                for kind, items in sorted(by_kind.items())
                if kind in DESCRIBERS
            },
        }


def _persons(dataset: Dataset, registered: set[str]) -> int:
    path = dataset.folder / PERSONS
    if not path.is_file() or not registered:
        return 0
    objects = list(registered)
    query = "SELECT count(DISTINCT person) FROM read_parquet(?) WHERE object IN (SELECT unnest(?))"
    with duckdb.connect() as connection:
        return int(connection.execute(query, [str(path), objects]).fetchone()[0])


def _omop(items: list[DataObject], disclosure: Disclosure) -> dict:
    """Each table's rows, summed over the objects, and each domain's most frequent concepts by
    persons, with their names where the vocabulary has them."""
    rows: Counter = Counter()
    for item in items:
        rows.update(item.entry.get("rows", {}))
    concepts = {}
    with duckdb.connect() as connection:
        for domain, (table, column) in CONCEPT_DOMAINS.items():
            found: Counter = Counter()
            names: dict[int, str] = {}
            for item in items:
                found.update(_concept_persons(connection, item.path, table, column))
                names.update(_concept_names(connection, item.path, list(found)))
            concepts[domain] = [
                {
                    "concept_id": concept,
                    "name": names.get(concept, ""),
                    "persons": disclosure.shown(n).as_dict(),
                }
                for concept, n in found.most_common(TOP_CONCEPTS)
                if n >= disclosure.min_count
            ]
    return {"tables": dict(sorted(rows.items())), "top_concepts": concepts}


def _concept_persons(connection, store: Path, table: str, column: str) -> Counter:
    path = store / f"{by_concept(table)}.parquet"
    if not path.is_file():
        path = store / f"{table}.parquet"
    if not path.is_file():
        return Counter()
    query = (
        f"SELECT {column}, count(DISTINCT person_id) AS n FROM read_parquet(?) "
        f"WHERE {column} <> 0 GROUP BY ALL ORDER BY n DESC LIMIT {TOP_CONCEPTS * 5}"
    )
    return Counter(dict(connection.execute(query, [str(path)]).fetchall()))


def _concept_names(connection, store: Path, concepts: list[int]) -> dict[int, str]:
    path = store / "concept.parquet"
    if not path.is_file() or not concepts:
        return {}
    query = (
        "SELECT concept_id, concept_name FROM read_parquet(?) "
        "WHERE concept_id IN (SELECT unnest(?))"
    )
    return dict(connection.execute(query, [str(path), concepts]).fetchall())


def _volumes(items: list[DataObject], _disclosure: Disclosure) -> dict:
    """Series by modality and by body part examined."""
    modalities: Counter = Counter()
    body_parts: Counter = Counter()
    for item in items:
        modalities[item.entry.get("pixels", {}).get("modality") or "unknown"] += 1
        body_parts[_body_part(item.path) or "not stated"] += 1
    return {
        "series": len(items),
        "modalities": dict(modalities.most_common()),
        "body_parts": dict(body_parts.most_common()),
    }


def _body_part(store: Path) -> str:
    try:
        headers = json.loads((store / VOLUME_HEADERS).read_text())
        return str(headers[0][BODY_PART]["Value"][0]).upper()
    except (OSError, ValueError, LookupError, TypeError):
        return ""


def _slides(items: list[DataObject], _disclosure: Disclosure) -> dict:
    """Slides by stain and by magnification (objective power)."""
    stains: Counter = Counter()
    powers: Counter = Counter()
    for item in items:
        stains[item.entry.get("attributes", {}).get("stain") or "not stated"] += 1
        power = item.entry.get("metadata", {}).get("objective_power")
        powers[f"{power}x" if power else "not stated"] += 1
    return {
        "slides": len(items),
        "stains": dict(stains.most_common()),
        "magnifications": dict(powers.most_common()),
    }


def _matrices(items: list[DataObject], _disclosure: Disclosure) -> dict:
    """Each matrix's cells, genes and obs columns."""
    fields = {"cells": "n_obs", "genes": "n_vars", "obs_columns": "obs_columns"}
    return {"matrices": _each_object(items, fields)}


def _genotypes(items: list[DataObject], _disclosure: Disclosure) -> dict:
    """Each genotype object's samples, variants and variants by contig."""
    fields = {"samples": "samples", "variants": "variants", "contigs": "variants_by_contig"}
    return {"genotypes": _each_object(items, fields)}


def _each_object(items: list[DataObject], fields: dict[str, str]) -> list[dict]:
    """Per object, its id and the `dataset.json` entry's values named by `fields`."""
    return [
        {"object": item.id, **{name: item.entry.get(key) for name, key in fields.items()}}
        for item in items
    ]


DESCRIBERS = {
    "omop": _omop,
    "volume": _volumes,
    "slide": _slides,
    "matrix": _matrices,
    "genotypes": _genotypes,
}
