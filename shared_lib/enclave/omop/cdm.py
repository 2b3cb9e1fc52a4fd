"""The OMOP Common Data Model 5.4: its tables and their columns, as the OHDSI specification's
field-level table states them (`cdm54.csv`: required, type, primary key, referenced table);
and the event tables that cohorts are built from, each also stored ordered by concept.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import cache
from importlib import resources

CDM_VERSION = "5.4"
# How each CDM type is stored (and what a source value must convert to).
STORED_TYPES = {
    "integer": "BIGINT",
    "float": "DOUBLE",
    "date": "DATE",
    "datetime": "TIMESTAMP",
    "text": "VARCHAR",
}


# The event tables cohorts use: the column of each event's concept, its date, its value.
EVENTS = {
    "condition_occurrence": ("condition_concept_id", "condition_start_date", None),
    "drug_exposure": ("drug_concept_id", "drug_exposure_start_date", None),
    "procedure_occurrence": ("procedure_concept_id", "procedure_date", None),
    "measurement": ("measurement_concept_id", "measurement_date", "value_as_number"),
    "observation": ("observation_concept_id", "observation_date", "value_as_number"),
    "visit_occurrence": ("visit_concept_id", "visit_start_date", None),
    "device_exposure": ("device_concept_id", "device_exposure_start_date", None),
}


def by_concept(table: str) -> str:
    """The name of an event table's copy ordered by concept (its concept, person, date and
    value columns only): a concept set reads only its own row groups of it."""
    return f"{table}_by_concept"


def by_concept_columns(table: str) -> list[str]:
    concept, day, value = EVENTS[table]
    return [concept, "person_id", day] + ([value] if value else [])


@dataclass(frozen=True)
class Column:
    name: str
    required: bool
    type: str  # integer, float, date, datetime or text
    primary_key: bool
    references: str  # the table whose key it holds, or ''

    @property
    def stored_type(self) -> str:
        return STORED_TYPES[self.type]

    @property
    def is_concept(self) -> bool:
        return self.references == "concept" or self.name.endswith("_concept_id")


@cache
def tables() -> dict[str, tuple[Column, ...]]:
    """Every CDM 5.4 table by its lower-case name, its columns in the specification's order."""
    found: dict[str, list[Column]] = {}
    with resources.files(__package__).joinpath("cdm54.csv").open(encoding="utf-8") as stream:
        for row in csv.DictReader(stream):
            found.setdefault(row["table"], []).append(
                Column(
                    name=row["column"],
                    required=row["required"] == "yes",
                    type=row["type"],
                    primary_key=row["primary_key"] == "yes",
                    references=row["references"],
                )
            )
    return {name: tuple(columns) for name, columns in found.items()}


def columns_of(table: str) -> dict[str, Column]:
    return {column.name: column for column in tables()[table]}


def is_person_table(table: str) -> bool:
    """Whether the table's rows are events of one person (it has a person_id)."""
    return "person_id" in columns_of(table)


def first_date(table: str) -> str | None:
    """The table's first date column (its events' start), by which its rows are ordered."""
    return next((c.name for c in tables()[table] if c.type == "date"), None)
