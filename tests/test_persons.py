"""One person across the commons' data types: a DICOM series, an OMOP person and a genotype
sample of the same patient id (given through the sources or a manifest) get one pseudonym, and
`enclave.persons()` / `enclave.person(pid)` find them; manifests are checked whole, and a
source or sample they do not name is refused by name. Real sample data from ../shared/data."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from person_data import MR_SERIES, PATIENT, SYNTHEA, VCF, quiet, require_person_data, write_manifest

import enclave
from enclave.catalog import CatalogError
from enclave.genotypes.ingest import ingest_genotypes
from enclave.matrices.ingest import ingest_matrices
from enclave.omop.ingest import ingest_omop
from enclave.persons import PERSONS, SourceManifest
from enclave.pseudonyms import Pseudonymizer
from enclave.volumes.ingest import ingest_dicom

KEY = b"persons-tests-key-" * 2
PID = Pseudonymizer(KEY).patient(PATIENT)


@pytest.fixture(scope="module")
def commons(tmp_path_factory) -> Path:
    require_person_data()
    folder = tmp_path_factory.mktemp("commons")
    root = folder / "data"
    mr = SourceManifest(write_manifest(folder / "mr.csv", [("dicom2nifti", PATIENT)]))
    samples = [("NA00001", PATIENT), ("NA00002", "P-2"), ("NA00003", "P-3")]
    genotypes = SourceManifest(write_manifest(folder / "samples.csv", samples))
    options = {"show_progress": False, "report": quiet}
    assert not ingest_dicom(MR_SERIES, "ds-mr", root, KEY, manifest=mr, **options)[0].error
    assert not ingest_omop(SYNTHEA, "ds-emr", root, KEY, object_id="cdm", **options)[0].error
    done = ingest_genotypes([VCF], "ds-dna", root, KEY, manifest=genotypes, **options)
    assert not done[0].error
    return root


def test_one_patient_id_gets_one_pseudonym_in_every_kind(commons):
    table = enclave.persons(commons)
    theirs = table[table["person"] == PID]
    assert sorted(zip(theirs["dataset"], theirs["kind"], strict=True)) == [
        ("ds-dna", "genotypes"),
        ("ds-emr", "omop"),
        ("ds-mr", "volume"),
    ]
    assert set(table[table["dataset"] == "ds-dna"]["person"]) == {
        Pseudonymizer(KEY).patient(p) for p in (PATIENT, "P-2", "P-3")
    }
    omop_persons = pq.read_table(commons / "ds-emr" / "cdm.omop" / "person.parquet").to_pandas()
    assert set(table[table["dataset"] == "ds-emr"]["person"]) == set(
        omop_persons["person_source_value"]
    )


def test_person_opens_their_records_series_and_genome(commons):
    found = enclave.person(PID, commons)
    assert set(found.records) == {"ds-emr/cdm"}
    records = found.records["ds-emr/cdm"]
    assert list(records["person"]["person_source_value"]) == [PID]
    person_id = records["person"]["person_id"].iloc[0]
    assert len(records["condition_occurrence"]) > 0
    assert all((rows["person_id"] == person_id).all() for rows in records.values())
    (volume,) = found.volumes.values()
    assert volume.dims == ("z", "y", "x") and volume.shape[0] == 4
    genome = found.genotypes["ds-dna/sample"]
    assert list(genome["sample_id"].values) == [PID]
    assert genome["call_genotype"].shape == (9, 1, 2)
    assert not found.slides and not found.cells
    with pytest.raises(CatalogError, match="no dataset this session may read holds person"):
        enclave.person("ENC0000000000000000", commons)


def test_rows_of_an_object_never_registered_are_not_persons(commons, tmp_path):
    """A crash between the persons file and dataset.json leaves rows of no object: unseen."""
    root = tmp_path / "data"
    (root / "ds-half").mkdir(parents=True)
    (root / "ds-half" / "dataset.json").write_text('{"id": "ds-half", "objects": {}}')
    pd.DataFrame({"person": [PID], "object": ["gone"], "kind": ["slide"]}).to_parquet(
        root / "ds-half" / PERSONS
    )
    assert enclave.persons(root).empty


def test_a_sample_the_manifest_does_not_name_is_refused_by_name(tmp_path):
    lines: list[str] = []
    manifest = SourceManifest(write_manifest(tmp_path / "m.csv", [("NA00001", PATIENT)]))
    (outcome,) = ingest_genotypes(
        [VCF], "ds-dna", tmp_path / "data", KEY, manifest=manifest, report=lines.append
    )
    unnamed = f"samples NA00002, NA00003: the manifest {manifest.path} does not name them"
    assert outcome.error == unnamed and f"FAILED  {unnamed}" in lines
    assert not (tmp_path / "data" / "ds-dna").exists()
    twins = [("NA00001", PATIENT), ("NA00002", PATIENT), ("NA00003", "P-3")]
    manifest = SourceManifest(write_manifest(tmp_path / "twins.csv", twins))
    (outcome,) = ingest_genotypes([VCF], "ds-dna", tmp_path / "data", KEY, manifest=manifest)
    assert "samples NA00001 and NA00002" in outcome.error and "the same patient" in outcome.error


def test_a_series_whose_patient_the_manifest_lacks_is_refused(tmp_path):
    manifest = SourceManifest(write_manifest(tmp_path / "m.csv", [("somebody-else", PATIENT)]))
    (outcome,) = ingest_dicom(
        MR_SERIES, "ds-mr", tmp_path / "data", KEY, manifest=manifest, report=quiet
    )
    assert "its PatientID: the manifest" in outcome.error and "does not name it" in outcome.error
    assert not (tmp_path / "data" / "ds-mr").exists()


@pytest.fixture
def pbmc() -> Path:
    scanpy = pytest.importorskip("scanpy")
    return Path(scanpy.__file__).parent / "datasets" / "10x_pbmc68k_reduced.h5ad"


def test_a_matrix_gets_its_persons_by_file_or_by_sample_column(pbmc, tmp_path):
    root = tmp_path / "data"
    whole = SourceManifest(write_manifest(tmp_path / "file.csv", [(pbmc.name, PATIENT)]))
    (done,) = ingest_matrices([pbmc], "ds-one", root, KEY, manifest=whole, report=quiet)
    assert done.error is None
    cells = enclave.person(PID, root).cells["ds-one/10x_pbmc68k_reduced"]
    assert cells.n_obs == 700 and set(cells.obs["person"]) == {PID}

    phases = ad.read_h5ad(pbmc).obs["phase"].unique()  # G1, S, G2M: three "samples"
    by_sample = [(str(p), f"P-{p}") for p in phases]
    sheet = SourceManifest(write_manifest(tmp_path / "sheet.csv", by_sample))
    (done,) = ingest_matrices(
        [pbmc], "ds-many", root, KEY, manifest=sheet, sample_column="phase", report=quiet
    )
    assert done.error is None
    table = enclave.persons(root)
    expected = {Pseudonymizer(KEY).patient(f"P-{p}") for p in phases}
    assert set(table[table["dataset"] == "ds-many"]["person"]) == expected
    some = Pseudonymizer(KEY).patient(f"P-{phases[0]}")
    cells = enclave.person(some, root).cells["ds-many/10x_pbmc68k_reduced"]
    assert 0 < cells.n_obs < 700
    assert np.all(cells.obs["phase"] == phases[0])

    short = SourceManifest(write_manifest(tmp_path / "short.csv", by_sample[:1]))
    (refused,) = ingest_matrices(
        [pbmc], "ds-short", root, KEY, manifest=short, sample_column="phase", report=quiet
    )
    assert "of obs column 'phase': the manifest" in refused.error
    assert not (root / "ds-short").exists()


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "empty (it needs source,patient_id)"),
        ("file,patient\na.svs,P1\n", "no column 'source' (its columns: file, patient)"),
        ("source,patient_id\na.svs,\n", "line 2: patient_id is empty"),
        ("source,patient_id\na.svs,P1,extra\n", "line 2: 3 fields, the header has 2"),
        ("source,patient_id\na.svs,P1\na.svs,P2\n", "line 3: source 'a.svs' is named again"),
    ],
    ids=["empty", "no-source", "no-patient", "ragged", "conflict"],
)
def test_a_bad_manifest_is_refused_in_one_line_naming_it(tmp_path, text, says):
    path = tmp_path / "manifest.csv"
    path.write_text(text)
    with pytest.raises(CatalogError) as refused:
        SourceManifest(path)
    message = str(refused.value)
    assert message.startswith(f"manifest {path}") and says in message
    assert "\n" not in message


def test_ingests_started_together_make_and_agree_on_one_key(tmp_path):
    """Sixteen processes asking for a key that does not exist yet all get the same one."""
    path = tmp_path / "keys" / "commons.key"
    script = "import sys; from pathlib import Path; from enclave.pseudonyms import load_key; "
    script += "print(load_key(Path(sys.argv[1])).hex())"
    runs = [
        subprocess.Popen([sys.executable, "-c", script, path], stdout=subprocess.PIPE, text=True)
        for _ in range(16)
    ]
    keys = {run.communicate()[0].strip() for run in runs}
    assert all(run.returncode == 0 for run in runs)
    assert keys == {path.read_bytes().hex()}
    assert len(path.read_bytes()) == 32
    assert [child.name for child in path.parent.iterdir()] == ["commons.key"]
