"""Cohorts on the demo commons' generated CDM, each count checked against pandas on the stored
tables: a concept set with its descendants, a drug required (or excluded) in a window after
the index, a measurement's value at entry and in a criterion, age and sex."""

from __future__ import annotations

import pandas as pd
import pytest

import enclave
from enclave.omop import Cohort, concept_set
from enclave.omop.ingest import ingest_omop
from enclave_hub.local.demo_records import write_demo_records

DIABETES, DIABETES_DISORDER, METFORMIN, HBA1C = 201826, 443732, 1503297, 3004410


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    """The demo CDM ingested; its stored folder and an open connection."""
    base = tmp_path_factory.mktemp("cohorts")
    source = write_demo_records(base / "source")
    (outcome,) = ingest_omop(source, "ds-emr", base / "data", b"k" * 32, "cdm", False)
    assert outcome.error is None
    folder = base / "data" / "ds-emr" / "cdm.omop"
    return folder, enclave.open_omop("ds-emr/cdm", root=base / "data")


def _table(folder, name: str) -> pd.DataFrame:
    return pd.read_parquet(folder / f"{name}.parquet")


def _first(folder, concepts) -> pd.Series:
    conditions = _table(folder, "condition_occurrence")
    chosen = conditions[conditions.condition_concept_id.isin(concepts)]
    return chosen.groupby("person_id").condition_start_date.min()


def _with_drug(folder, index: pd.Series, low: int, high: int) -> set:
    drugs = _table(folder, "drug_exposure")
    drugs = drugs[drugs.drug_concept_id == METFORMIN].merge(
        index.rename("index_date").reset_index(), on="person_id"
    )
    start = pd.to_datetime(drugs.drug_exposure_start_date)
    index_date = pd.to_datetime(drugs.index_date)
    kept = (start >= index_date + pd.Timedelta(days=low)) & (
        start <= index_date + pd.Timedelta(days=high)
    )
    return set(drugs[kept].person_id)


def test_a_concept_set_takes_its_descendants(stored):
    folder, cdm = stored
    assert concept_set(cdm, [DIABETES]) == (DIABETES, DIABETES_DISORDER)
    assert concept_set(cdm, [DIABETES], descendants=False) == (DIABETES,)
    cohort = Cohort(cdm, "condition_occurrence", concept_set(cdm, [DIABETES]))
    index = _first(folder, [DIABETES, DIABETES_DISORDER])
    found = cohort.persons()
    assert dict(zip(found.person_id, pd.to_datetime(found.index_date), strict=True)) == {
        person: pd.Timestamp(day) for person, day in index.items()
    }


def test_a_drug_required_or_excluded_after_the_index(stored):
    folder, cdm = stored
    concepts = concept_set(cdm, [DIABETES])
    index = _first(folder, concepts)
    taken = _with_drug(folder, index, 0, 30)
    base = Cohort(cdm, "condition_occurrence", concepts)
    assert base.require("drug_exposure", [METFORMIN], within_days=(0, 30)).count() == len(taken)
    without = base.require("drug_exposure", [METFORMIN], within_days=(0, 30), present=False)
    assert without.count() == len(index) - len(taken) > 0


def test_values_at_entry_and_in_a_criterion(stored):
    folder, cdm = stored
    measurements = _table(folder, "measurement")
    high = measurements[(measurements.measurement_concept_id == HBA1C)]
    high = high[high.value_as_number >= 7.5]
    assert Cohort(cdm, "measurement", (HBA1C,), (7.5, None)).count() == high.person_id.nunique()
    index = _first(folder, [DIABETES])
    merged = high.merge(index.rename("index_date").reset_index(), on="person_id")
    gap = (pd.to_datetime(merged.measurement_date) - pd.to_datetime(merged.index_date)).dt.days
    expected = merged[(gap >= -365) & (gap <= 365)].person_id.nunique()
    cohort = Cohort(cdm, "condition_occurrence", (DIABETES,)).require(
        "measurement", [HBA1C], within_days=(-365, 365), value_between=(7.5, None)
    )
    assert cohort.count() == expected > 0


def test_age_and_sex_at_the_index(stored):
    folder, cdm = stored
    index = _first(folder, [DIABETES]).rename("index_date").reset_index()
    persons = _table(folder, "person").merge(index, on="person_id")
    age = pd.to_datetime(persons.index_date).dt.year - persons.year_of_birth
    chosen = persons[(age >= 50) & (age <= 70) & (persons.gender_concept_id == 8532)]
    cohort = Cohort(cdm, "condition_occurrence", (DIABETES,))
    assert cohort.age_at_index(50, 70).of_sex("female").count() == len(chosen) > 0


def test_what_a_cohort_cannot_be_is_said(stored):
    _, cdm = stored
    with pytest.raises(ValueError, match="person: not an event table"):
        Cohort(cdm, "person", (1,))
    with pytest.raises(ValueError, match="condition_occurrence has no value to compare"):
        Cohort(cdm, "condition_occurrence", (DIABETES,), (1.0, None))
    with pytest.raises(ValueError, match="the first must not exceed the second"):
        Cohort(cdm, "condition_occurrence", (DIABETES,)).require(
            "drug_exposure", [METFORMIN], within_days=(30, 0)
        )
    with pytest.raises(ValueError, match="sex 'other'"):
        Cohort(cdm, "condition_occurrence", (DIABETES,)).of_sex("other")
