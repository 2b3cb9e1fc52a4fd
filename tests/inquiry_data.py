"""A small commons for the inquiry tests: generated medical records of 40 persons (with a
concept planted as another's descendant), the shared MR series and VCF samples tied to some of
them by manifests, all ingested as a site would. Its persons' facts are kept for the tests to
compute each expected count themselves."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pandas as pd
from person_data import MR_SERIES, VCF, quiet, require_person_data, write_manifest

from enclave.genotypes.ingest import ingest_genotypes
from enclave.omop.ingest import ingest_omop
from enclave.persons import SourceManifest
from enclave.pseudonyms import Pseudonymizer
from enclave.volumes.ingest import ingest_dicom

KEY = b"inquiry-tests-commons-key-123456"
PERSONS = 40
DIABETES, DIABETES_CHILD, ASTHMA = 201826, 443238, 317009  # the child planted as a descendant
METFORMIN, GLUCOSE = 1503297, 3004410
CONCEPTS = (DIABETES, DIABETES_CHILD, ASTHMA, METFORMIN, GLUCOSE)
FEMALE, MALE = 8532, 8507


def persons_table(count: int = PERSONS, offset: int = 0, glucose=lambda n: n % 3 == 0):
    """Who the records hold: id, source value, year of birth, sex, and their events (each
    concept id plus `offset`: a site's local concepts start at 2,000,000,000)."""
    rows = []
    for number in range(1, count + 1):
        rows.append(
            {
                "person_id": number,
                "person_source_value": f"P{number}",
                "year_of_birth": 1940 + number % 60,
                "gender_concept_id": FEMALE if number % 2 else MALE,
                "condition": _condition(number),
                "drug": METFORMIN if number <= 8 else None,
                "glucose": glucose(number),
            }
        )
    people = pd.DataFrame(rows)
    for column in ("condition", "drug"):
        people[column] = people[column] + offset
    people.attrs["offset"] = offset
    return people


def _condition(number: int) -> int | None:
    if number <= 14:
        return DIABETES
    if number <= 17:
        return DIABETES_CHILD
    return ASTHMA if number <= 30 else None


def write_records(folder: Path, people: pd.DataFrame) -> Path:
    """The records of `people` as OMOP CDM CSV files in `folder`."""
    folder.mkdir(parents=True)
    offset = people.attrs["offset"]
    people.assign(race_concept_id=0, ethnicity_concept_id=0)[
        [
            "person_id",
            "gender_concept_id",
            "year_of_birth",
            "race_concept_id",
            "ethnicity_concept_id",
            "person_source_value",
        ]
    ].to_csv(folder / "person.csv", index=False)
    people = people.assign(glucose_concept=people["glucose"].map({True: GLUCOSE + offset}))
    _events(
        folder, people, "condition_occurrence", "condition", {"condition_type_concept_id": 32020}
    )
    _events(
        folder,
        people,
        "drug_exposure",
        "drug",
        {"drug_exposure_end_date": date(2020, 3, 1), "drug_type_concept_id": 32818},
    )
    _events(
        folder, people, "measurement", "glucose_concept", {"measurement_type_concept_id": 32817}
    )
    pd.DataFrame(
        {
            "ancestor_concept_id": [DIABETES + offset] * 2,
            "descendant_concept_id": [DIABETES + offset, DIABETES_CHILD + offset],
            "min_levels_of_separation": [0, 1],
            "max_levels_of_separation": [0, 1],
        }
    ).to_csv(folder / "concept_ancestor.csv", index=False)
    pd.DataFrame(
        {
            "concept_id": [
                c + offset for c in (DIABETES, DIABETES_CHILD, ASTHMA, METFORMIN, GLUCOSE)
            ],
            "concept_name": [
                "Type 2 diabetes mellitus",
                "Diabetic complication",
                "Asthma",
                "metformin",
                "Glucose",
            ],
            "domain_id": ["Condition", "Condition", "Condition", "Drug", "Measurement"],
            "vocabulary_id": ["SNOMED", "SNOMED", "SNOMED", "RxNorm", "LOINC"],
            "concept_class_id": ["Clinical Finding"] * 3 + ["Ingredient", "Lab Test"],
            "concept_code": ["44054006", "1", "195967001", "6809", "2345-7"],
            "valid_start_date": date(1970, 1, 1),
            "valid_end_date": date(2099, 12, 31),
        }
    ).to_csv(folder / "concept.csv", index=False)
    return folder


# Each event table's id, concept and date columns, and the date of its events.
EVENT_COLUMNS = {
    "condition_occurrence": (
        "condition_occurrence_id",
        "condition_concept_id",
        "condition_start_date",
    ),
    "drug_exposure": ("drug_exposure_id", "drug_concept_id", "drug_exposure_start_date"),
    "measurement": ("measurement_id", "measurement_concept_id", "measurement_date"),
}


def _events(folder: Path, people: pd.DataFrame, table: str, column: str, more: dict) -> None:
    """One event of `table` for each person whose `column` holds a concept."""
    having = people.dropna(subset=[column])
    key, concept, day = EVENT_COLUMNS[table]
    pd.DataFrame(
        {
            key: range(1, len(having) + 1),
            "person_id": having["person_id"],
            concept: having[column].astype(int),
            day: date(2020, 1, 1),
            **more,
        }
    ).to_csv(folder / f"{table}.csv", index=False)


def build_commons(folder: Path) -> Path:
    """The commons' data root: ds-emr (the records), ds-mr (P1's MR series), ds-dna (samples
    of P1, P2 and P3)."""
    require_person_data()
    root = folder / "data"
    options = {"show_progress": False, "report": quiet}
    records = write_records(folder / "emr", persons_table())
    assert not ingest_omop(records, "ds-emr", root, KEY, object_id="cdm", **options)[0].error
    mr = SourceManifest(write_manifest(folder / "mr.csv", [("dicom2nifti", "P1")]))
    assert not ingest_dicom(MR_SERIES, "ds-mr", root, KEY, manifest=mr, **options)[0].error
    samples = [("NA00001", "P1"), ("NA00002", "P2"), ("NA00003", "P3")]
    dna = SourceManifest(write_manifest(folder / "dna.csv", samples))
    assert not ingest_genotypes([VCF], "ds-dna", root, KEY, manifest=dna, **options)[0].error
    return root


def pseudonym(source_value: str) -> str:
    return Pseudonymizer(KEY).patient(source_value)
