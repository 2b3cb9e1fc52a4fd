"""Medical records in a real session: an OMOP CDM, ingested and granted to a project, answers a
cohort count inside the project's sandboxed session equal to the count pandas makes from the
source; and a query over a table larger than the session's memory limit finishes inside the
session's cgroup, spilling to disk."""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from enclave.omop.ingest import ingest_omop
from enclave.pseudonyms import Pseudonymizer
from enclave_harness import run_in_project_session

pytestmark = pytest.mark.e2e

SYNTHEA = Path(__file__).resolve().parents[2] / "shared/data/omop/synthea27nj-5.4-parquet"
USER, PROJECT = "nadia", "records-study"
KEY = b"records-key-0123456789abcdefghij"
# Coronary arteriosclerosis, with two conditions planted as its descendants; four drugs.
ANCESTOR, DESCENDANTS = 317576, (260139, 80502)
DRUGS = (1332419, 1127433, 40173590, 1539411)
BIG_ROWS, BIG_PERSONS = 36_000_000, 500_000
# What the big query reads of a row, decoded: measurement_id, person_id, value (8 bytes each)
# and measurement_date (4).
ROW_BYTES = 28
SESSION_MEMORY = 768 * 1024**2  # the "records" profile of the test site
IN_SESSION = f"""
import json, os
import enclave
from enclave.omop import Cohort, concept_set
cdm = enclave.open_omop("ds-emr/cdm")
conditions = concept_set(cdm, [{ANCESTOR}])
drugs = concept_set(cdm, {list(DRUGS)}, descendants=False)
cohort = (
    Cohort(cdm, "condition_occurrence", conditions)
    .require("drug_exposure", drugs, within_days=(0, 30))
    .age_at_index(minimum=50)
)
big = enclave.open_omop("ds-big/cdm")
rows = big.execute("SELECT count(*) FROM measurement").fetchone()[0]
groups = big.execute(
    "SELECT count(*) FROM (SELECT measurement_id, person_id, measurement_date, "
    "value_as_number, count(*) FROM measurement GROUP BY ALL)"
).fetchone()[0]
print(json.dumps({{
    "concepts": list(conditions),
    "count": cohort.count(),
    "memory_limit": big.execute("SELECT current_setting('memory_limit')").fetchone()[0],
    "session_limit": int(os.environ["MEM_LIMIT"]),
    "rows": rows,
    "groups": groups,
}}))
"""


def _records(source: Path) -> Path:
    """The Synthea sample with two conditions planted under coronary arteriosclerosis."""
    shutil.copytree(SYNTHEA, source)
    rows = [(ANCESTOR, ANCESTOR, 0, 0)] + [(ANCESTOR, d, 1, 1) for d in DESCENDANTS]
    values = ", ".join(str(row) for row in rows)
    duckdb.connect().execute(
        f"COPY (SELECT * FROM (VALUES {values}) t(ancestor_concept_id, descendant_concept_id, "
        f"min_levels_of_separation, max_levels_of_separation)) "
        f"TO '{source}/concept_ancestor.parquet'"
    )
    return source


def _expected_count() -> int:
    """The cohort, counted with pandas from the source, dates moved as ingest moves them."""
    persons = pd.read_parquet(SYNTHEA / "person.parquet")
    pseudonyms = Pseudonymizer(KEY)
    shift = {
        row.person_id: pd.Timedelta(pseudonyms.day_shift(row.person_source_value))
        for row in persons.itertuples()
    }
    conditions = pd.read_parquet(SYNTHEA / "condition_occurrence.parquet")
    chosen = conditions[conditions.condition_concept_id.isin((ANCESTOR, *DESCENDANTS))]
    index = chosen.groupby("person_id").condition_start_date.min()
    drugs = pd.read_parquet(SYNTHEA / "drug_exposure.parquet")
    drugs = drugs[drugs.drug_concept_id.isin(DRUGS)]
    born = persons.set_index("person_id").birth_datetime
    count = 0
    for person, day in index.items():
        start = pd.Timestamp(day)
        age = (start + shift[person]).year - (born[person] + shift[person]).year
        taken = pd.to_datetime(drugs[drugs.person_id == person].drug_exposure_start_date)
        within = ((taken >= start) & (taken <= start + pd.Timedelta(days=30))).any()
        count += bool(age >= 50 and within)
    return count


def _big(source: Path) -> Path:
    """A measurement table larger than the session's memory, and its persons."""
    source.mkdir()
    connection = duckdb.connect()
    connection.execute(
        f"COPY (SELECT range AS person_id, 8532 AS gender_concept_id, 1950 + range % 50 AS "
        f"year_of_birth, 0 AS race_concept_id, 0 AS ethnicity_concept_id "
        f"FROM range({BIG_PERSONS})) TO '{source}/person.parquet'"
    )
    connection.execute(
        f"COPY (SELECT range AS measurement_id, range % {BIG_PERSONS} AS person_id, "
        f"3004410 + range % 7 AS measurement_concept_id, DATE '2010-01-01' + "
        f"CAST(range % 3650 AS INTEGER) AS measurement_date, 32817 AS "
        f"measurement_type_concept_id, (range % 1000) / 10.0 AS value_as_number "
        f"FROM range({BIG_ROWS})) TO '{source}/measurement.parquet'"
    )
    return source


@pytest.mark.slow
def test_a_cohort_count_and_a_query_larger_than_memory_inside_a_session(enclave, tmp_path):
    if not SYNTHEA.is_dir():
        pytest.skip(f"{SYNTHEA} is absent: the shared sample data sits beside the checkout")
    root = enclave.site.data_root
    for dataset, source in (
        ("ds-emr", _records(tmp_path / "emr")),
        ("ds-big", _big(tmp_path / "big")),
    ):
        (outcome,) = ingest_omop(source, dataset, root, KEY, "cdm", False, print, "1GB")
        assert outcome.error is None, outcome.error

    found = run_in_project_session(
        enclave, USER, PROJECT, ["ds-emr", "ds-big"], IN_SESSION, profile="records"
    )

    assert found["concepts"] == sorted((ANCESTOR, *DESCENDANTS))
    assert found["count"] == _expected_count() > 0
    assert found["session_limit"] == SESSION_MEMORY
    # What the query reads is larger than the session's memory, and the query finished.
    assert found["rows"] == BIG_ROWS and BIG_ROWS * ROW_BYTES > SESSION_MEMORY
    assert found["groups"] == BIG_ROWS
    assert found["memory_limit"] == "366.2 MiB"  # half the session's 768 MiB, DuckDB's way
