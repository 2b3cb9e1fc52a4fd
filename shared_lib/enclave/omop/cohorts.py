"""Cohorts the way OMOP users build them: concept sets (with their descendants through
`concept_ancestor`) and criteria relative to an index event, compiled to one SQL query on an
`open_omop` connection.

    cdm = enclave.open_omop("ds-emr/cdm")
    diabetes = concept_set(cdm, [201826])                     # and every descendant
    metformin = concept_set(cdm, [1503297])
    cohort = (
        Cohort(cdm, "condition_occurrence", diabetes)         # index: the first diagnosis
        .require("drug_exposure", metformin, within_days=(0, 30))
        .age_at_index(minimum=50)
    )
    cohort.count(); cohort.persons()                          # person_id, index_date

ATLAS cohort definitions (Circe JSON) are not compiled here: Circe's only full compiler is
the OHDSI Java library.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

import duckdb

from .cdm import EVENTS, by_concept

SEXES = {"female": 8532, "male": 8507}


def concept_set(
    connection: duckdb.DuckDBPyConnection, concept_ids: Iterable[int], descendants: bool = True
) -> tuple[int, ...]:
    """The concepts, and (by default) every descendant `concept_ancestor` knows of them."""
    chosen = sorted({int(c) for c in concept_ids})
    if not chosen or not descendants:
        return tuple(chosen)
    found = connection.execute(
        "SELECT DISTINCT descendant_concept_id FROM concept_ancestor "
        "WHERE ancestor_concept_id IN (SELECT unnest(?))",
        [chosen],
    ).fetchall()
    return tuple(sorted(set(chosen) | {row[0] for row in found}))


@dataclass(frozen=True)
class Criterion:
    """An event of `table` with a concept of `concepts`, `within_days` of the index (from, to,
    inclusive; negative before it), its value (where the table has one) in a range."""

    table: str
    concepts: tuple[int, ...]
    within_days: tuple[int, int]
    value_range: tuple[float | None, float | None] = (None, None)
    present: bool = True  # False: the person must have no such event


@dataclass(frozen=True)
class Cohort:
    """Persons whose first event of `table` with a concept of `concepts` (and, where the table
    has values, a value in `value_between`, inclusive) is their index, and who meet every
    criterion."""

    connection: duckdb.DuckDBPyConnection
    table: str
    concepts: tuple[int, ...]
    value_between: tuple[float | None, float | None] = (None, None)
    criteria: tuple[Criterion, ...] = ()
    age_range: tuple[int | None, int | None] = (None, None)
    sex: str | None = None

    def __post_init__(self) -> None:
        _, _, value = _domain(self.table)  # an event table, or a clear error
        if self.value_between != (None, None) and value is None:
            raise ValueError(f"{self.table} has no value to compare")

    def require(
        self,
        table: str,
        concepts: Iterable[int],
        within_days: tuple[int, int],
        value_between: tuple[float | None, float | None] = (None, None),
        present: bool = True,
    ) -> Cohort:
        """A cohort that also needs (or, `present=False`, must lack) such an event."""
        if value_between != (None, None) and _domain(table)[2] is None:
            raise ValueError(f"{table} has no value to compare")
        low, high = within_days
        if low > high:
            raise ValueError(f"within_days {within_days}: the first must not exceed the second")
        criterion = Criterion(table, tuple(concepts), (low, high), value_between, present)
        return replace(self, criteria=(*self.criteria, criterion))

    def age_at_index(self, minimum: int | None = None, maximum: int | None = None) -> Cohort:
        """A cohort of those aged `minimum` to `maximum` years (inclusive) at their index."""
        return replace(self, age_range=(minimum, maximum))

    def of_sex(self, sex: str) -> Cohort:
        if sex not in SEXES:
            raise ValueError(f"sex {sex!r}: use one of {', '.join(SEXES)}")
        return replace(self, sex=sex)

    def sql(self) -> tuple[str, list]:
        """The query (person_id, index_date) and its parameters."""
        concept, day, value = _domain(self.table)
        values, limits = _in_range(value, self.value_between)
        parameters: list = [list(self.concepts), *limits]
        query = [
            "WITH entry AS (",
            f"  SELECT person_id, min({day}) AS index_date FROM {by_concept(self.table)}",
            f"  WHERE {concept} IN (SELECT unnest(?)){values} GROUP BY person_id)",
            "SELECT e.person_id, e.index_date FROM entry e",
            "JOIN person p USING (person_id)" if self.age_range != (None, None) or self.sex else "",
            "WHERE true",
        ]
        low, high = self.age_range
        age = "(year(e.index_date) - p.year_of_birth)"
        if low is not None:
            query.append(f"AND {age} >= ?")
            parameters.append(low)
        if high is not None:
            query.append(f"AND {age} <= ?")
            parameters.append(high)
        if self.sex is not None:
            query.append("AND p.gender_concept_id = ?")
            parameters.append(SEXES[self.sex])
        for criterion in self.criteria:
            text, values = _criterion_sql(criterion)
            query.append(text)
            parameters += values
        return "\n".join(query), parameters

    def persons(self):
        """The cohort as a pandas DataFrame: person_id, index_date."""
        text, parameters = self.sql()
        return self.connection.execute(text + "\nORDER BY e.person_id", parameters).df()

    def count(self) -> int:
        text, parameters = self.sql()
        found = self.connection.execute(f"SELECT count(*) FROM ({text})", parameters)
        return int(found.fetchone()[0])


def _criterion_sql(criterion: Criterion) -> tuple[str, list]:
    concept, day, value = _domain(criterion.table)
    low, high = criterion.within_days
    values, limits = _in_range(f"x.{value}", criterion.value_range)
    text = (
        f"AND {'' if criterion.present else 'NOT '}EXISTS (SELECT 1 FROM "
        f"{by_concept(criterion.table)} x "
        f"WHERE x.person_id = e.person_id AND x.{concept} IN (SELECT unnest(?)) "
        f"AND x.{day} BETWEEN e.index_date + ? AND e.index_date + ?{values})"
    )
    return text, [list(criterion.concepts), low, high, *limits]


def _in_range(column: str, bounds: tuple[float | None, float | None]) -> tuple[str, list]:
    """SQL conditions (each after an AND) that keep `column` within `bounds`, inclusive; and
    their parameters."""
    minimum, maximum = bounds
    conditions = [f" AND {column} >= ?"] * (minimum is not None)
    conditions += [f" AND {column} <= ?"] * (maximum is not None)
    return "".join(conditions), [b for b in bounds if b is not None]


def _domain(table: str) -> tuple[str, str, str | None]:
    try:
        return EVENTS[table]
    except KeyError:
        raise ValueError(f"{table}: not an event table ({', '.join(EVENTS)})") from None
