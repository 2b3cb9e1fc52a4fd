"""De-identification of OMOP CDM tables, as the SQL that turns a source table into its stored
form.

- `person_id` and every other id that could be a hospital's own number (each table's key and
  every column that refers to one) become keyed pseudonymous integers: the same source id
  gives the same integer in every table, so joins still hold. The key of an event table that
  no other table refers to (a measurement's, say) is renumbered instead: nothing of the
  source's number is left, and there is nothing to join.
- `person_source_value` becomes the person's keyed pseudonym: the one DICOM ingest gives the
  same patient's PatientID under the same key; the patient's own source value is cut out of
  every other text the person's rows keep.
- Every date and datetime of a person moves by the person's keyed day shift (the shift DICOM
  ingest applies to that patient), so intervals within a person are kept; the year, month and
  day of birth follow the shifted birth date.
- Free text (notes, NLP snippets), names, exact addresses and provider numbers are emptied;
  a ZIP code keeps its first three digits.

Vocabulary tables and the source's own description are kept as they are.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

from .cdm import Column, columns_of, tables

VOCABULARY = frozenset(
    {
        "concept",
        "vocabulary",
        "domain",
        "concept_class",
        "concept_relationship",
        "relationship",
        "concept_synonym",
        "concept_ancestor",
        "source_to_concept_map",
        "drug_strength",
        "cohort_definition",
    }
)
UNCHANGED = VOCABULARY | {"cdm_source", "metadata"}
# Where a table names its person: person_id, except in cohort (whose subjects are persons).
PERSON_COLUMN = {"cohort": "subject_id"}
# Emptied: free text, names, numbers of providers, exact addresses, and the source values that
# sites fill with their own record numbers (encounters, notes, specimens); what those say in
# the standard way stays in their *_concept_id columns.
EMPTIED = {
    "visit_occurrence": ("visit_source_value",),
    "visit_detail": ("visit_detail_source_value",),
    "note": ("note_title", "note_text", "note_source_value"),
    "note_nlp": ("snippet", "lexical_variant"),
    "provider": ("provider_name", "npi", "dea", "provider_source_value"),
    "care_site": ("care_site_name", "care_site_source_value"),
    "location": (
        "address_1",
        "address_2",
        "city",
        "county",
        "location_source_value",
        "latitude",
        "longitude",
    ),
    "specimen": ("specimen_source_id",),
}
ZIP_DIGITS_KEPT = 3
# Ids whose table another column names (an event of any table): keyed in one space of their
# own, so they no longer join; recorded as such.
ANY_EVENT = {
    "observation": ("observation_event_id",),
    "measurement": ("measurement_event_id",),
    "note": ("note_event_id",),
    "cost": ("cost_event_id",),
    "episode_event": ("event_id",),
    "fact_relationship": ("fact_id_1", "fact_id_2"),
}


def person_column(table: str) -> str | None:
    """The column that names a table's person, or None for tables of no one person."""
    column = PERSON_COLUMN.get(table, "person_id")
    return column if column in columns_of(table) else None


@cache
def keyed_spaces() -> frozenset[str]:
    """The tables whose integer keys are a source's own numbers."""
    return frozenset(
        name
        for name, columns in tables().items()
        if name not in UNCHANGED and any(c.primary_key and c.type == "integer" for c in columns)
    )


def id_space(table: str, column: Column) -> str | None:
    """The space in which a column's ids are keyed, or None for a column kept as it is."""
    if table in UNCHANGED or column.type != "integer" or column.is_concept:
        return None
    if column.name in ANY_EVENT.get(table, ()):
        return "any-event"
    if table == "cohort" and column.name == "subject_id":
        return "person"
    if column.primary_key:
        return table
    return column.references if column.references in keyed_spaces() else None


@cache
def referenced() -> frozenset[str]:
    """The tables some column of another table refers to."""
    return frozenset(
        column.references
        for name, columns in tables().items()
        for column in columns
        if column.references and column.references != name
    )


def renumbered(table: str, column: Column) -> bool:
    """Whether the column is a table's own key that nothing refers to: renumbered."""
    return column.primary_key and id_space(table, column) == table and table not in referenced()


def stored_expression(
    table: str, column: Column, source: str, keyed: Callable[[str, str], str]
) -> str:
    """The SQL giving a column's stored value from `source` (a column expression already of
    the stored type), with the person's row of `persons` joined as `p`; `keyed(space,
    source)` gives the SQL of an id's keyed pseudonym in its space."""
    name = column.name
    if name in EMPTIED.get(table, ()):  # a required text keeps a value: the empty one
        return "''" if column.required else f"CAST(NULL AS {column.stored_type})"
    if table == "location" and name == "zip":
        return f"left({source}, {ZIP_DIGITS_KEPT})"
    if table in UNCHANGED:
        return source
    if renumbered(table, column):
        return "row_number() OVER ()"
    space = id_space(table, column)
    if space is not None:
        return "p.person_id" if name == person_column(table) else keyed(space, source)
    if person_column(table) is None:
        return source
    if table == "person" and name == "person_source_value":
        return "p.pseudonym"
    if table == "person" and name in BIRTH_PARTS:
        return f"coalesce({BIRTH_PARTS[name]}(p.birth_date), {source})"
    if column.type == "date":
        return f"{source} + p.shift_days"
    if column.type == "datetime":
        return f"{source} + to_days(p.shift_days)"
    if column.type == "text":
        return (
            f"CASE WHEN length(p.source_value) >= 4 THEN "
            f"replace({source}, p.source_value, p.pseudonym) ELSE {source} END"
        )
    return source


BIRTH_PARTS = {"year_of_birth": "year", "month_of_birth": "month", "day_of_birth": "day"}


def keyed_integer(key_hex: str, space: str, source: str) -> str:
    """SQL for a keyed pseudonymous id: 60 bits of SHA-256 over the secret key, the id's space
    and the id (NULL stays NULL)."""
    digest = f"sha256('{key_hex}:{space}:' || CAST({source} AS VARCHAR))"
    return f"('0x' || substr({digest}, 1, 15))::BIGINT"


def policy() -> dict:
    """What `dataset.json` records of the de-identification."""
    return {
        "ids": "keyed pseudonymous integers (SHA-256 over a secret key, the id's table, the id)",
        "renumbered": sorted(
            f"{table}.{c.name}"
            for table, columns in tables().items()
            for c in columns
            if renumbered(table, c)
        ),
        "person_source_value": "the person's keyed pseudonym (as DICOM ingest gives PatientID)",
        "dates": "shifted per person by the person's keyed day shift (as DICOM ingest)",
        "emptied": {table: list(names) for table, names in EMPTIED.items()},
        "generalised": {"location.zip": f"first {ZIP_DIGITS_KEPT} characters"},
        "text": "the person's own source value replaced by the pseudonym in every kept text",
        "ids_of_any_event": {table: list(names) for table, names in ANY_EVENT.items()},
        "unchanged": sorted(UNCHANGED),
    }
