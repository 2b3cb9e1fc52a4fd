"""The inquiry portal's counts, catalogue and disclosure on a small real commons (generated
records ingested as a site would, the shared MR series and VCF tied to some of its persons):
each count equals the one computed here from the persons' own facts."""

from __future__ import annotations

import shutil
import threading
import time
from datetime import date

import pandas as pd
import pytest
from inquiry_data import (
    ASTHMA,
    DIABETES,
    DIABETES_CHILD,
    FEMALE,
    GLUCOSE,
    KEY,
    METFORMIN,
    PERSONS,
    build_commons,
    persons_table,
    pseudonym,
)
from person_data import write_manifest

from enclave.persons import SourceManifest
from enclave.slides.ingest import ingest_slides
from enclave_hub.inquiry.catalogue import Catalogue
from enclave_hub.inquiry.counts import CommonsCounts, Criteria, CriteriaError, Turns
from enclave_hub.inquiry.disclosure import Disclosure, RateLimit
from slide_data import slide_path


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return build_commons(tmp_path_factory.mktemp("commons"))


@pytest.fixture(scope="module")
def facts(root) -> pd.DataFrame:
    """Each person's facts, with the year of birth as the store holds it (dates are shifted)."""
    stored = pd.read_parquet(root / "ds-emr" / "cdm.omop" / "person.parquet")
    people = persons_table()
    people["pseudonym"] = people["person_source_value"].map(pseudonym)
    born = dict(zip(stored["person_source_value"], stored["year_of_birth"], strict=True))
    people["born"] = people["pseudonym"].map(born)
    return people


def expected(facts, keep) -> int:
    return int(facts[keep(facts)].shape[0])


def test_counts_follow_the_records_with_descendants_age_and_sex(root, facts):
    counts = CommonsCounts(root)
    age = date.today().year - facts["born"]
    cases = [
        (Criteria(), lambda f: f["person_id"] > 0),
        (
            Criteria(conditions=(DIABETES,)),
            lambda f: f["condition"].isin([DIABETES, DIABETES_CHILD]),
        ),
        (Criteria(conditions=(DIABETES_CHILD,)), lambda f: f["condition"] == DIABETES_CHILD),
        (Criteria(conditions=(DIABETES, ASTHMA)), lambda f: f["condition"].notna()),
        (
            Criteria(conditions=(DIABETES,), drugs=(METFORMIN,)),
            lambda f: f["condition"].isin([DIABETES, DIABETES_CHILD]) & f["drug"].notna(),
        ),
        (Criteria(measurements=(GLUCOSE,)), lambda f: f["glucose"]),
        (Criteria(age=(60, None)), lambda f: age >= 60),
        (
            Criteria(age=(None, 70), sex="female"),
            lambda f: (age <= 70) & (f["gender_concept_id"] == FEMALE),
        ),
    ]
    for criteria, keep in cases:
        assert counts.count(criteria) == expected(facts, keep) > 0, criteria


def test_counts_ask_for_kinds_of_data_too(root, facts):
    counts = CommonsCounts(root)
    assert counts.count(Criteria(kinds=("volume",))) == 1
    assert counts.count(Criteria(kinds=("genotypes",))) == 3
    assert counts.count(Criteria(kinds=("genotypes", "volume", "omop"))) == 1
    with_genome = facts["person_source_value"].isin(["P1", "P2", "P3"])
    diabetic = facts["condition"].isin([DIABETES, DIABETES_CHILD])
    assert counts.count(Criteria(conditions=(DIABETES,), kinds=("genotypes",))) == int(
        (with_genome & diabetic).sum()
    )
    assert counts.count(Criteria(kinds=("slide",))) == 0
    assert counts.kind_combinations() == {
        ("genotypes", "omop", "volume"): 1,
        ("genotypes", "omop"): 2,
        ("omop",): PERSONS - 3,
    }


def test_a_dataset_added_later_is_counted_without_a_restart(root, tmp_path):
    """The service's counter sees an ingest made while it runs (dataset versions change)."""
    copy = tmp_path / "data"
    shutil.copytree(root, copy)
    counts = CommonsCounts(copy)
    assert counts.count(Criteria(kinds=("slide",))) == 0
    slide = slide_path("small.svs")
    manifest = SourceManifest(write_manifest(tmp_path / "slides.csv", [(slide.name, "P2")]))
    (done,) = ingest_slides([slide], "ds-path", copy, KEY, manifest, show_progress=False)
    assert done.error is None
    assert counts.count(Criteria(kinds=("slide", "genotypes"))) == 1


@pytest.mark.parametrize(
    ("given", "says"),
    [
        ({"conditions": ["x"]}, "conditions: concept ids are whole numbers"),
        ({"drugs": [-4]}, "drugs: concept ids are positive"),
        ({"age_min": 80, "age_max": 20}, "age_min: above age_max"),
        ({"age_max": 900}, "age_max: between 0 and 150"),
        ({"sex": "other"}, "sex: 'other' is not one of female, male"),
        ({"kinds": ["scan"]}, "kinds: a list of omop, volume, slide, genotypes, matrix"),
        ({"person_id": 3}, "unknown criteria: person_id"),
        ([], "criteria must be a JSON object"),
    ],
)
def test_bad_criteria_are_refused_naming_the_field(given, says):
    with pytest.raises(CriteriaError, match=says.replace("(", r"\(")):
        Criteria.parse(given)


def test_form_fields_parse_as_the_api_s_json():
    fields = {"conditions": "201826, 443238", "drugs": "", "age_min": "50", "sex": "", "kinds": []}
    assert Criteria.parse(fields) == Criteria(conditions=(201826, 443238), age=(50, None))


def test_small_counts_are_hidden_and_the_rest_rounded():
    shown = Disclosure(min_count=10, round_to=10).shown
    assert shown(0).text == shown(9).text == "fewer than 10" and shown(9).value is None
    assert [shown(n).value for n in (10, 14, 15, 24, 124, 125)] == [10, 10, 20, 20, 120, 130]
    # Two cohorts one person apart read alike, unless they straddle a rounding boundary.
    alike = sum(shown(n).text == shown(n + 1).text for n in range(10, 1010))
    assert alike == 900
    assert Disclosure(min_count=5, round_to=1).shown(7).text == "7"


def test_the_rate_limit_refuses_a_burst_and_forgets_it_after_a_minute():
    now = [0.0]
    limit = RateLimit(3, clock=lambda: now[0])
    assert [limit.admit("nina") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limit.admit("nina") == pytest.approx(60.0)
    assert limit.admit("otto") == 0.0, "each person has their own"
    now[0] = 30.0
    assert limit.admit("nina") == pytest.approx(30.0)
    now[0] = 60.0
    assert limit.admit("nina") == 0.0


def test_the_catalogue_describes_each_kind_and_shows_counts_as_disclosure_allows(root):
    catalogue = Catalogue(root, Disclosure(min_count=10, round_to=10))
    summaries = {d["id"]: d for d in catalogue.datasets()}
    assert set(summaries) == {"ds-dna", "ds-emr", "ds-mr"}
    assert summaries["ds-emr"]["persons"]["text"] == "about 40"
    assert summaries["ds-dna"]["persons"] == {
        "count": None,
        "text": "fewer than 10",
        "fewer_than": 10,
    }
    assert "dictionary" not in summaries["ds-emr"]
    records = catalogue.dataset("ds-emr")["dictionary"]["omop"]
    assert records["tables"]["person"] == PERSONS
    (top,) = [c for c in records["top_concepts"]["conditions"] if c["concept_id"] == DIABETES]
    assert top["name"] == "Type 2 diabetes mellitus" and top["persons"]["text"] == "about 10"
    assert all(c["persons"]["count"] for c in records["top_concepts"]["conditions"])
    assert not records["top_concepts"]["drugs"], "8 persons: fewer than the threshold, left out"
    series = catalogue.dataset("ds-mr")["dictionary"]["volume"]
    assert series["series"] == 1 and series["modalities"] == {"MR": 1}
    (genome,) = catalogue.dataset("ds-dna")["dictionary"]["genotypes"]["genotypes"]
    assert genome["samples"] == 3 and genome["variants"] == 9
    assert set(genome["contigs"]) == {"19", "20", "X"}


def take_turns(turns: Turns, people: int) -> tuple[list[int], int]:
    """`people` threads queue while the slots are held, then count; the order in which they
    got in, and how many were in at once at most."""
    entered, inside, most, lock = [], [0], [0], threading.Lock()
    held = [turns.turn() for _ in range(turns._free)]
    for holder in held:
        holder.__enter__()

    def count(number: int) -> None:
        with turns.turn():
            with lock:
                entered.append(number)
                inside[0] += 1
                most[0] = max(most[0], inside[0])
            time.sleep(0.01)
            with lock:
                inside[0] -= 1

    threads = []
    for number in range(people):
        threads.append(threading.Thread(target=count, args=(number,)))
        threads[-1].start()
        while len(turns._waiting) < number + 1:  # in line before the next one comes
            time.sleep(0.001)
    for holder in held:
        holder.__exit__(None, None, None)
    for thread in threads:
        thread.join(10)
    return entered, most[0]


def test_counts_take_turns_in_the_order_they_came():
    assert take_turns(Turns(1), 8) == (list(range(8)), 1)
    entered, most = take_turns(Turns(2), 8)
    assert sorted(entered) == list(range(8)) and most == 2
