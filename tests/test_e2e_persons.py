"""One person across data types inside a real session: an MR series, an OMOP person and a
genotype sample given the same patient id (the records by their source value, the series and
the sample by manifests) are found by `enclave.person(pid)` in the project's sandboxed session,
and nothing of a dataset the project was not granted (the same person's slide) shows there."""

from __future__ import annotations

import pytest
from person_data import MR_SERIES, PATIENT, SYNTHEA, VCF, quiet, require_person_data, write_manifest

from enclave.genotypes.ingest import ingest_genotypes
from enclave.omop.ingest import ingest_omop
from enclave.persons import SourceManifest
from enclave.pseudonyms import Pseudonymizer
from enclave.slides.ingest import ingest_slides
from enclave.volumes.ingest import ingest_dicom
from enclave_harness import run_in_project_session
from slide_data import slide_path

pytestmark = pytest.mark.e2e

USER, PROJECT = "otto", "one-person-study"
GRANTED = ["ds-person-dna", "ds-person-emr", "ds-person-mr"]
KEY = b"one-commons-key-for-every-kind!!"  # as the command line's `commons` key
PID = Pseudonymizer(KEY).patient(PATIENT)
IN_SESSION = f"""
import json
import enclave
found = enclave.person({PID!r})
table = enclave.persons()
records = found.records["ds-person-emr/cdm"]
print(json.dumps({{
    "records": sorted(found.records),
    "volumes": sorted(found.volumes),
    "genotypes": sorted(found.genotypes),
    "slides": sorted(found.slides),
    "source_value": list(records["person"]["person_source_value"]),
    "conditions": len(records.get("condition_occurrence", [])),
    "volume_shape": list(next(iter(found.volumes.values())).shape),
    "sample": [str(s) for s in found.genotypes["ds-person-dna/sample"]["sample_id"].values],
    "datasets": sorted(set(table["dataset"])),
    "kinds": sorted(set(table[table["person"] == {PID!r}]["kind"])),
}}))
"""


def test_a_person_s_records_series_and_genome_in_a_session_and_nothing_else(enclave, tmp_path):
    require_person_data()
    root = enclave.site.data_root
    options = {"show_progress": False, "report": quiet}
    mr = SourceManifest(write_manifest(tmp_path / "mr.csv", [("dicom2nifti", PATIENT)]))
    samples = [("NA00001", PATIENT), ("NA00002", "P-2"), ("NA00003", "P-3")]
    dna = SourceManifest(write_manifest(tmp_path / "dna.csv", samples))
    slide = slide_path("small.svs")
    pathology = SourceManifest(write_manifest(tmp_path / "slides.csv", [(slide.name, PATIENT)]))
    done = [
        *ingest_dicom(MR_SERIES, "ds-person-mr", root, KEY, manifest=mr, **options),
        *ingest_omop(SYNTHEA, "ds-person-emr", root, KEY, object_id="cdm", **options),
        *ingest_genotypes([VCF], "ds-person-dna", root, KEY, manifest=dna, **options),
        # The same person's slide, in a dataset the project is not granted.
        *ingest_slides([slide], "ds-person-slides", root, KEY, pathology, **options),
    ]
    assert [o.error for o in done] == [None] * 4

    found = run_in_project_session(enclave, USER, PROJECT, GRANTED, IN_SESSION)

    assert found["records"] == ["ds-person-emr/cdm"]
    assert found["volumes"] == ["ds-person-mr/4"]
    assert found["genotypes"] == ["ds-person-dna/sample"]
    assert found["slides"] == [], "the slide's dataset is not granted: not mounted, not found"
    assert found["source_value"] == [PID] and found["conditions"] > 0
    assert found["volume_shape"][0] == 4
    assert found["sample"] == [PID]
    assert found["datasets"] == GRANTED and "ds-person-slides" not in found["datasets"]
    assert found["kinds"] == ["genotypes", "omop", "volume"]
