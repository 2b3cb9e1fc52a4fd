"""OMOP CDM 5.4 ingest on the real Synthea sample (Parquet, and a CSV copy the test writes):
every row arrives and counts as DuckDB counts the source; identifiers never reach the output,
intervals within a person hold, and the pseudonym is the one DICOM ingest gives the same
patient; a bad source is named (file, column, row) and leaves nothing registered."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import duckdb
import pydicom
import pytest
from pydicom.data import get_testdata_file

import enclave
from enclave.omop import dask_tables
from enclave.omop.cdm import EVENTS
from enclave.omop.ingest import ingest_omop
from enclave.pseudonyms import Pseudonymizer
from enclave.volumes.ingest import ingest_dicom

SYNTHEA = Path(__file__).resolve().parents[2] / "shared/data/omop/synthea27nj-5.4-parquet"
KEY = b"omop-test-key-0123456789abcdefgh"
CT = Path(get_testdata_file("CT_small.dcm")).parent / "dicomdirtests" / "98892001" / "CT5N"


@pytest.fixture(scope="module")
def synthea() -> Path:
    if not SYNTHEA.is_dir():
        pytest.skip(f"{SYNTHEA} is absent: the shared sample data sits beside the checkout")
    return SYNTHEA


def _sql(query: str) -> list:
    return duckdb.connect().execute(query).fetchall()


def _as_csv(source: Path, target: Path, planted: bool = False) -> Path:
    """The Parquet source as CSV (every third table gzipped, names upper-case); `planted`
    adds notes and a condition whose texts hold the patient's identifiers."""
    target.mkdir(parents=True)
    connection = duckdb.connect()
    for number, path in enumerate(sorted(source.glob("*.parquet"))):
        name = path.stem.upper() + (".csv.gz" if number % 3 == 0 else ".csv")
        query = f"SELECT * FROM '{path}'"
        if planted and path.stem == "note":
            query = _planted_notes(path)
        if planted and path.stem == "condition_occurrence":
            query = (
                f"SELECT * REPLACE (CASE WHEN condition_occurrence_id = (SELECT "
                f"min(condition_occurrence_id) FROM '{path}') THEN 'seen by ' || (SELECT "
                f"person_source_value FROM '{source}/person.parquet' p WHERE p.person_id = "
                f"c.person_id) ELSE condition_source_value END AS condition_source_value) "
                f"FROM '{path}' c"
            )
        connection.execute(f"COPY ({query}) TO '{target / name}' (HEADER, DELIMITER ',')")
    return target


def _planted_notes(path: Path) -> str:
    """Two notes per person, 40 days apart, whose title and text name the person."""
    return (
        "SELECT row_number() OVER () AS note_id, p.person_id, "
        "DATE '2020-01-01' + CAST(k * 40 AS INTEGER) AS note_date, NULL AS note_datetime, "
        "44814645 AS note_type_concept_id, "
        "0 AS note_class_concept_id, 'Note on ' || p.person_source_value AS note_title, "
        "'Patient ' || p.person_source_value || ' seen at home' AS note_text, "
        "0 AS encoding_concept_id, 4180186 AS language_concept_id, NULL AS provider_id, "
        "NULL AS visit_occurrence_id, NULL AS visit_detail_id, NULL AS note_source_value, "
        "NULL AS note_event_id, NULL AS note_event_field_concept_id "
        f"FROM '{path.parent}/person.parquet' p, range(2) r(k)"
    )


def _ingest(source: Path, root: Path, dataset: str = "emr") -> list:
    lines: list[str] = []
    outcomes = ingest_omop(source, dataset, root, KEY, "cdm", False, lines.append, "512MB")
    return outcomes, lines


@pytest.mark.parametrize("form", ["parquet", "csv"])
def test_every_table_and_the_top_conditions_count_as_in_the_source(synthea, tmp_path, form):
    source = synthea if form == "parquet" else _as_csv(synthea, tmp_path / "csv")
    (outcome,), _ = _ingest(source, tmp_path / "data")
    assert outcome.error is None
    entry = json.loads((tmp_path / "data" / "emr" / "dataset.json").read_text())["objects"]["cdm"]
    expected = {
        p.stem: _sql(f"SELECT count(*) FROM '{p}'")[0][0] for p in synthea.glob("*.parquet")
    }
    assert entry["rows"] == expected
    assert entry["cdm_version"] == "5.4" and entry["vocabulary_version"] == "v5.0 09-APR-22*"

    top_conditions = (
        "SELECT condition_concept_id, count(DISTINCT person_id) AS n FROM {} "
        "GROUP BY 1 ORDER BY n DESC, 1 LIMIT 10"
    )
    cdm = enclave.open_omop("emr/cdm", root=tmp_path / "data")
    assert cdm.execute(top_conditions.format("condition_occurrence")).fetchall() == _sql(
        top_conditions.format(f"'{synthea}/condition_occurrence.parquet'")
    )
    stored = tmp_path / "data" / "emr" / "cdm.omop"
    by_concept = {f"{table}_by_concept" for table in EVENTS}  # every event table's copy
    assert {p.stem for p in stored.glob("*.parquet")} == set(expected) | by_concept
    (listed,) = enclave.datasets(tmp_path / "data", details=True)
    assert listed["kind"] == "omop" and listed["objects"]["cdm"]["rows"] == expected
    assert listed["objects"]["cdm"]["vocabulary_version"] == "v5.0 09-APR-22*"


def test_the_tables_are_dask_dataframes_with_the_same_answers(synthea, tmp_path):
    _ingest(synthea, tmp_path / "data")
    tables = dask_tables("emr/cdm", root=tmp_path / "data")
    conditions = tables["condition_occurrence"]
    by_dask = conditions.groupby("condition_concept_id").person_id.nunique().compute()
    cdm = enclave.open_omop("emr/cdm", root=tmp_path / "data")
    by_duckdb = dict(
        cdm.execute(
            "SELECT condition_concept_id, count(DISTINCT person_id) FROM condition_occurrence "
            "GROUP BY 1"
        ).fetchall()
    )
    assert by_dask.to_dict() == by_duckdb
    assert len(tables["person"]) == 28


def test_no_identifier_leaves_and_intervals_within_a_person_hold(synthea, tmp_path):
    source = _as_csv(synthea, tmp_path / "csv", planted=True)
    (outcome,), _ = _ingest(source, tmp_path / "data")
    assert outcome.error is None
    persons = _sql(f"SELECT person_id, person_source_value FROM '{synthea}/person.parquet'")
    providers = [r[0] for r in _sql(f"SELECT provider_name FROM '{synthea}/provider.parquet'")]
    secrets = {value for _, value in persons} | set(providers) | {"seen at home"}
    stored = tmp_path / "data" / "emr" / "cdm.omop"
    connection = duckdb.connect()
    for path in stored.glob("*.parquet"):
        for name, kind, *_ in connection.execute(f"DESCRIBE SELECT * FROM '{path}'").fetchall():
            if kind == "VARCHAR":
                values = {
                    r[0]
                    for r in connection.execute(
                        f"SELECT DISTINCT \"{name}\" FROM '{path}'"
                    ).fetchall()
                }
                leaked = {s for s in secrets for v in values if v and s in v}
                assert not leaked, f"{path.name}.{name} holds {sorted(leaked)[:3]}"
            if name == "person_id":
                ids = {
                    r[0] for r in connection.execute(f"SELECT person_id FROM '{path}'").fetchall()
                }
                assert not ids & {p for p, _ in persons}, f"{path.name} keeps source person ids"
    pseudonyms = Pseudonymizer(KEY)
    mapped = {pseudonyms.patient(value): value for _, value in persons}
    dated = (
        "SELECT p.person_source_value, c.condition_start_date FROM "
        "'{0}/condition_occurrence.parquet' c JOIN '{0}/person.parquet' p USING (person_id)"
    )
    shifted = connection.execute(dated.format(stored)).fetchall()
    original = set(_sql(dated.format(synthea)))
    restored = {(mapped[p], day - pseudonyms.day_shift(mapped[p])) for p, day in shifted}
    assert restored == original  # each person's dates moved by the person's own shift
    assert not set(shifted) & original  # and moved
    notes = connection.execute(
        f"SELECT note_text, note_title FROM '{stored}/note.parquet'"
    ).fetchall()
    assert len(notes) == 2 * len(persons)
    assert all(not text and not title for text, title in notes)
    planted = connection.execute(
        f"SELECT condition_source_value FROM '{stored}/condition_occurrence.parquet' "
        "WHERE condition_source_value LIKE 'seen by %'"
    ).fetchall()
    assert planted and planted[0][0].startswith("seen by ENC")


def test_a_patient_gets_one_pseudonym_and_shift_from_dicom_and_omop(synthea, tmp_path):
    patient = str(pydicom.dcmread(next(CT.iterdir())).PatientID)
    source = tmp_path / "emr"
    source.mkdir()
    duckdb.connect().execute(
        f"COPY (SELECT * REPLACE ('{patient}' AS person_source_value) FROM "
        f"'{synthea}/person.parquet' WHERE person_id = 1) TO '{source}/person.parquet'"
    )
    _ingest(source, tmp_path / "data", "records")
    ingest_dicom(CT, "images", tmp_path / "data", KEY, shift_dates=True, show_progress=False)
    (record,) = (
        duckdb.connect()
        .execute(
            f"SELECT person_source_value, birth_datetime FROM "
            f"'{tmp_path}/data/records/cdm.omop/person.parquet'"
        )
        .fetchall()
    )
    (headers,) = (tmp_path / "data" / "images").glob("*/headers.json")
    dicom = json.loads(headers.read_text())[0]
    assert dicom["00100020"]["Value"] == [record[0]]  # PatientID
    born = _sql(f"SELECT birth_datetime FROM '{synthea}/person.parquet' WHERE person_id = 1")[0][0]
    assert born - record[1] == -Pseudonymizer(KEY).day_shift(patient)


def _broken_sources(synthea: Path, folder: Path) -> dict[str, tuple[Path, str]]:
    """Sources each with one problem, and what the error must say."""
    cases = {}

    def source(name: str) -> Path:
        path = folder / name
        path.mkdir(parents=True)
        for table in ("person", "condition_occurrence", "concept"):
            shutil.copy(synthea / f"{table}.parquet", path)
        return path

    connection = duckdb.connect()
    missing = source("missing-person-id")
    connection.execute(
        f"COPY (SELECT * EXCLUDE (person_id) FROM '{synthea}/condition_occurrence.parquet') "
        f"TO '{missing}/condition_occurrence.parquet'"
    )
    cases["missing-person-id"] = (
        missing,
        "condition_occurrence.parquet: column 'person_id' is missing",
    )
    bad_date = _as_csv(synthea, folder / "bad-date")
    table = bad_date / "CONDITION_OCCURRENCE.csv"
    lines = table.read_text().splitlines()
    header = lines[0].split(",")
    cells = lines[3].split(",")
    cells[header.index("condition_start_date")] = "last tuesday"
    lines[3] = ",".join(cells)
    table.write_text("\n".join(lines) + "\n")
    cases["bad-date"] = (
        bad_date,
        "CONDITION_OCCURRENCE.csv: column 'condition_start_date', row 3: the value is not a date",
    )
    stranger = source("unknown-person")
    conditions = f"'{synthea}/condition_occurrence.parquet'"
    connection.execute(
        f"COPY (SELECT * REPLACE (CASE WHEN condition_occurrence_id = (SELECT "
        f"max(condition_occurrence_id) FROM {conditions}) THEN 999999 ELSE person_id END "
        f"AS person_id) FROM {conditions}) TO '{stranger}/condition_occurrence.parquet'"
    )
    cases["unknown-person"] = (stranger, "person 999999 is not in the person table")
    truncated = source("truncated")
    path = truncated / "condition_occurrence.parquet"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    cases["truncated"] = (truncated, "condition_occurrence.parquet: cannot be read")
    return cases


def test_a_bad_source_is_named_and_leaves_nothing_while_a_good_one_goes_in(synthea, tmp_path):
    root = tmp_path / "data"
    for name, (source, says) in _broken_sources(synthea, tmp_path / "bad").items():
        (outcome,), lines = _ingest(source, root, name)
        assert outcome.error is not None and says in outcome.error, f"{name}: {outcome.error}"
        assert any(says in line for line in lines), name
        assert not (root / name).exists(), f"{name}: something was registered"
    (outcome,), _ = _ingest(synthea, root, "truncated")
    assert outcome.error is None
    assert "cdm" in json.loads((root / "truncated" / "dataset.json").read_text())["objects"]
