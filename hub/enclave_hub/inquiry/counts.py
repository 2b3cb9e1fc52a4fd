"""Counts of persons across the whole commons, for the inquiry portal: how many persons have
medical records matching criteria (conditions, drugs and measurements by concept with their
descendants, age, sex) and have each kind of data asked for. Only a count comes out.

The data root is read as it is, into one in-memory DuckDB database rebuilt when a dataset
changes: every person numbered once (from every dataset's `persons.parquet`), with their kinds
of data and, per OMOP object, their year of birth and sex; the event tables stay in their
Parquet (their copies ordered by concept, so that a concept set reads only its own row groups).
A count then works on integers only.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import threading
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import duckdb

from enclave.catalog import MANIFEST, Dataset, datasets
from enclave.omop.cdm import by_concept
from enclave.omop.cohorts import SEXES
from enclave.persons import PERSONS

# The kinds of data a person may be asked to have, as objects record them.
KINDS = {
    "omop": "medical records",
    "volume": "a CT or MR series",
    "slide": "a pathology slide",
    "genotypes": "a genome",
    "matrix": "single-cell data",
}
# The criteria's concept domains: the event table and its concept column.
DOMAINS = {
    "conditions": ("condition_occurrence", "condition_concept_id"),
    "drugs": ("drug_exposure", "drug_concept_id"),
    "measurements": ("measurement", "measurement_concept_id"),
}
MAX_CONCEPTS = 200  # concepts of one domain in one query
MAX_AGE = 150
# Each count uses every core; at most this many run at once, the others wait their turn.
CORES = len(os.sched_getaffinity(0))


class CriteriaError(ValueError):
    """Criteria that cannot be counted; the message names the field."""


@dataclass(frozen=True)
class Criteria:
    """Persons with an event of any of each domain's concepts (or a descendant), aged
    `age` years (inclusive, today, from their year of birth), of `sex`, who have every kind of
    data in `kinds`. Empty fields ask nothing."""

    conditions: tuple[int, ...] = ()
    drugs: tuple[int, ...] = ()
    measurements: tuple[int, ...] = ()
    age: tuple[int | None, int | None] = (None, None)
    sex: str | None = None
    kinds: tuple[str, ...] = ()

    @classmethod
    def parse(cls, data: object) -> Criteria:
        """Criteria from a JSON object (the API's) or a form's fields; CriteriaError naming
        the field that is wrong."""
        if not isinstance(data, dict):
            raise CriteriaError("criteria must be a JSON object")
        unknown = set(data) - {*DOMAINS, "age_min", "age_max", "sex", "kinds"}
        if unknown:
            raise CriteriaError(f"unknown criteria: {', '.join(sorted(unknown))}")
        concepts = {name: _concepts(name, data.get(name)) for name in DOMAINS}
        ages = tuple(_age(name, data.get(name)) for name in ("age_min", "age_max"))
        if None not in ages and ages[0] > ages[1]:
            raise CriteriaError("age_min: above age_max")
        sex = data.get("sex") or None
        if sex is not None and sex not in SEXES:
            raise CriteriaError(f"sex: {sex!r} is not one of {', '.join(SEXES)}")
        kinds = data.get("kinds") or []
        if not isinstance(kinds, list) or any(k not in KINDS for k in kinds):
            raise CriteriaError(f"kinds: a list of {', '.join(KINDS)}")
        return cls(**concepts, age=ages, sex=sex, kinds=tuple(sorted(set(kinds))))

    @property
    def clinical(self) -> bool:
        """Whether the records are asked anything (then a person must have records)."""
        asked = (self.conditions, self.drugs, self.measurements, self.sex)
        return any(asked) or self.age != (None, None)

    def as_dict(self) -> dict:
        return {
            **{name: list(getattr(self, name)) for name in DOMAINS},
            "age_min": self.age[0],
            "age_max": self.age[1],
            "sex": self.sex,
            "kinds": list(self.kinds),
        }


def _concepts(name: str, value: object) -> tuple[int, ...]:
    if value in (None, "", []):
        return ()
    if isinstance(value, str):
        value = [part for part in value.replace(",", " ").split() if part]
    if not isinstance(value, list) or len(value) > MAX_CONCEPTS:
        raise CriteriaError(f"{name}: a list of at most {MAX_CONCEPTS} concept ids")
    try:
        found = {int(v) for v in value}
    except (TypeError, ValueError):
        raise CriteriaError(f"{name}: concept ids are whole numbers") from None
    if any(c <= 0 for c in found):
        raise CriteriaError(f"{name}: concept ids are positive")
    return tuple(sorted(found))


def _age(name: str, value: object) -> int | None:
    if value in (None, ""):
        return None
    try:
        age = int(value)
    except (TypeError, ValueError):
        raise CriteriaError(f"{name}: a whole number of years") from None
    if not 0 <= age <= MAX_AGE:
        raise CriteriaError(f"{name}: between 0 and {MAX_AGE}")
    return age


@dataclass
class _Snapshot:
    """The data root as last read: each dataset's version, and the database of its views."""

    versions: dict[str, object]
    connection: duckdb.DuckDBPyConnection
    records: list[str] = field(default_factory=list)  # the OMOP objects' view prefixes


class Turns:
    """At most `slots` holders at once, the others served in the order they came (Python's
    own semaphores wake waiters in no order, and under load one could wait for ever)."""

    def __init__(self, slots: int):
        self._free = slots
        self._lock = threading.Lock()
        self._waiting: collections.deque[threading.Event] = collections.deque()

    @contextlib.contextmanager
    def turn(self):
        with self._lock:
            mine = None
            if self._free > 0 and not self._waiting:
                self._free -= 1
            else:
                mine = threading.Event()
                self._waiting.append(mine)
        if mine is not None:
            mine.wait()
        try:
            yield
        finally:
            with self._lock:
                if self._waiting:
                    self._waiting.popleft().set()  # the slot passes to the next in line
                else:
                    self._free += 1


class CommonsCounts:
    """Counts over the data root `root`, safe to call from several threads at once: they run
    `CORES` at a time, first come first served, which keeps the slowest answers under load
    near the typical ones (ten at once share the cores and all finish late)."""

    def __init__(self, root: Path):
        self.root = root
        self._lock = threading.Lock()
        self._snapshot: _Snapshot | None = None
        self._turns = Turns(CORES)

    def count(self, criteria: Criteria) -> int:
        """How many persons meet `criteria`."""
        with self._turns.turn():
            snapshot = self._current()
            query, parameters = _count_sql(snapshot, criteria)
            with snapshot.connection.cursor() as cursor:
                return int(cursor.execute(query, parameters).fetchone()[0])

    def kind_combinations(self) -> dict[tuple[str, ...], int]:
        """How many persons have exactly each combination of kinds of data."""
        query = (
            "SELECT kinds, count(*) FROM (SELECT pid, list_sort(list(DISTINCT kind)) AS "
            "kinds FROM person_kinds GROUP BY pid) GROUP BY kinds ORDER BY kinds"
        )
        with self._current().connection.cursor() as cursor:
            return {tuple(kinds): int(n) for kinds, n in cursor.execute(query).fetchall()}

    def _current(self) -> _Snapshot:
        """The data root as it is now, read again when any dataset changed."""
        versions = _versions(self.root)
        with self._lock:
            if self._snapshot is None or self._snapshot.versions != versions:
                if self._snapshot is not None:
                    self._snapshot.connection.close()
                self._snapshot = _build(self.root, versions)
            return self._snapshot


def _count_sql(snapshot: _Snapshot, criteria: Criteria) -> tuple[str, list]:
    """The count of persons (by their number in `people`) meeting `criteria`."""
    parameters: list = []
    if criteria.clinical:
        parts = []
        for prefix in snapshot.records:
            text, values = _records_sql(prefix, criteria)
            parts.append(text)
            parameters += values
        candidates = " UNION ".join(parts) if parts else "SELECT NULL AS pid WHERE false"
    else:
        candidates = "SELECT pid FROM people"
    query = f"SELECT count(DISTINCT pid) FROM ({candidates}) c WHERE pid IS NOT NULL"
    for kind in criteria.kinds:
        query += " AND pid IN (SELECT pid FROM person_kinds WHERE kind = ?)"
        parameters.append(kind)
    return query, parameters


def _versions(root: Path) -> dict[str, object]:
    """Each dataset's version (its `dataset.json`'s, and the persons file's time)."""
    found = {}
    for dataset_id in datasets(root):
        folder = root / dataset_id
        try:
            manifest = json.loads((folder / MANIFEST).read_text())
            persons = (folder / PERSONS).stat().st_mtime_ns if (folder / PERSONS).exists() else 0
        except (OSError, ValueError):
            continue
        found[dataset_id] = (manifest.get("version"), manifest.get("updated_at"), persons)
    return found


def _build(root: Path, versions: dict[str, object]) -> _Snapshot:
    """An in-memory database of the data root's persons, numbered: `people` (person, pid),
    `person_kinds` (pid, kind) from every dataset's persons file, and for each OMOP object
    `r<n>_people` (person_id, pid, year_of_birth, gender_concept_id) beside views of its
    `concept_ancestor` and event tables by concept, which stay in their Parquet."""
    connection = duckdb.connect(config={"threads": CORES, "preserve_insertion_order": False})
    snapshot = _Snapshot(versions, connection)
    files = []
    for dataset_id in versions:
        dataset = Dataset(dataset_id, root)
        if (dataset.folder / PERSONS).is_file():
            files.append((dataset.folder / PERSONS, set(dataset.objects)))
        for item in dataset.objects.values():
            if item.kind == "omop":
                prefix = f"r{len(snapshot.records)}"
                _record_views(connection, prefix, item.path)
                snapshot.records.append(prefix)
    parts = [
        f"SELECT person, kind FROM read_parquet('{_sql(str(path))}') "
        f"WHERE object IN ({', '.join(map(_quoted, objects))})"
        for path, objects in files
        if objects
    ]
    empty = "SELECT NULL::VARCHAR AS person, NULL::VARCHAR AS kind WHERE false"
    connection.execute(f"CREATE TEMP VIEW persons_all AS {' UNION ALL '.join(parts) or empty}")
    connection.execute(
        "CREATE TABLE people AS SELECT person, CAST(row_number() OVER () AS INTEGER) AS pid "
        "FROM (SELECT DISTINCT person FROM persons_all)"
    )
    connection.execute(
        "CREATE TABLE person_kinds AS SELECT DISTINCT pid, kind FROM persons_all JOIN people "
        "USING (person)"
    )
    for prefix in snapshot.records:
        connection.execute(
            f'CREATE TABLE "{prefix}_people" AS SELECT p.person_id, i.pid, p.year_of_birth, '
            f'p.gender_concept_id FROM "{prefix}_person" p JOIN people i ON '
            "i.person = p.person_source_value"
        )
    return snapshot


def _record_views(connection: duckdb.DuckDBPyConnection, prefix: str, store: Path) -> None:
    for table in ("person", "concept_ancestor", *(by_concept(t) for t, _ in DOMAINS.values())):
        path = store / f"{table}.parquet"
        if not path.is_file() and table != "person":
            path = store / f"{table.removesuffix('_by_concept')}.parquet"
        body = (
            f"SELECT * FROM read_parquet('{_sql(str(path))}')"
            if path.is_file()
            else _empty_table(table)
        )
        connection.execute(f'CREATE VIEW "{prefix}_{table}" AS {body}')


def _empty_table(table: str) -> str:
    if table == "concept_ancestor":
        return (
            "SELECT NULL::BIGINT AS ancestor_concept_id, NULL::BIGINT AS descendant_concept_id "
            "WHERE false"
        )
    name = table.removesuffix("_by_concept")
    concept = next(c for t, c in DOMAINS.values() if t == name)
    return f"SELECT NULL::BIGINT AS person_id, NULL::BIGINT AS {concept} WHERE false"


def _records_sql(prefix: str, criteria: Criteria) -> tuple[str, list]:
    """The numbers of the persons of one OMOP object who meet the clinical criteria."""
    conditions, parameters = ["true"], []
    for name, (table, concept) in DOMAINS.items():
        chosen = list(getattr(criteria, name))
        if not chosen:
            continue
        conditions.append(
            f'p.person_id IN (SELECT person_id FROM "{prefix}_{by_concept(table)}" WHERE '
            f"{concept} IN (SELECT unnest(?) UNION SELECT descendant_concept_id FROM "
            f'"{prefix}_concept_ancestor" WHERE ancestor_concept_id IN (SELECT unnest(?))))'
        )
        parameters += [chosen, chosen]
    low, high = criteria.age
    this_year = date.today().year
    if low is not None:
        conditions.append("p.year_of_birth <= ?")
        parameters.append(this_year - low)
    if high is not None:
        conditions.append("p.year_of_birth >= ?")
        parameters.append(this_year - high)
    if criteria.sex is not None:
        conditions.append("p.gender_concept_id = ?")
        parameters.append(SEXES[criteria.sex])
    text = f'SELECT p.pid FROM "{prefix}_people" p WHERE {" AND ".join(conditions)}'
    return text, parameters


def _sql(text: str) -> str:
    return text.replace("'", "''")


def _quoted(text: str) -> str:
    return f"'{_sql(text)}'"
