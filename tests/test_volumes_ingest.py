"""`enclave dataset ingest dicom`: regular series become de-identified volumes, irregular ones
are refused by name, and nothing identifying or secret reaches the dataset."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

import enclave
from enclave.volumes.ingest import ingest_dicom

DICOMDIR_TESTS = Path(get_testdata_file("CT_small.dcm")).parent / "dicomdirtests"
KEY = b"release-key-0123456789abcdefghij"
DATASET = "ds-ct"


@pytest.fixture(scope="module")
def ingested(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    lines: list[str] = []
    outcomes = ingest_dicom(
        DICOMDIR_TESTS, DATASET, root, KEY, show_progress=False, report=lines.append
    )
    return root, outcomes, lines


def test_the_clean_ct_becomes_a_volume_in_hounsfield_units(ingested):
    root, outcomes, _ = ingested
    ok = [o.object_id for o in outcomes if o.error is None]
    assert ok == ["5-smartscore-gated-0-5-sec"]
    volume = enclave.open_volume(f"{DATASET}/5-smartscore-gated-0-5-sec", root)
    assert volume.shape == (5, 16, 16) and volume.attrs["units"] == "HU"
    first = pydicom.dcmread(DICOMDIR_TESTS / "98892001" / "CT5N" / "3353")  # lowest slice
    expected = first.pixel_array * float(first.RescaleSlope) + float(first.RescaleIntercept)
    np.testing.assert_array_equal(volume.values[0], expected)


def test_irregular_series_are_refused_by_name_with_the_reason(ingested):
    _, outcomes, lines = ingested
    errors = [o.error for o in outcomes if o.error]
    assert any("'Routine Brain'" in e and "missing" in e for e in errors)
    assert any("'ANGIO Projected from   C'" in e and "orientation changes" in e for e in errors)
    skipped = sum(1 for e in errors if e.endswith(("not a DICOM file", "(not a slice)")))
    assert lines[-1] == (
        f"1 series ingested into {DATASET}; {len(errors) - skipped} refused and "
        f"{skipped} file(s) skipped"
    )


def test_nothing_identifying_or_secret_is_in_the_dataset(ingested):
    root, _, _ = ingested
    original = pydicom.dcmread(DICOMDIR_TESTS / "98892001" / "CT5N" / "2062")
    identifying = [
        str(original.PatientName),
        str(original.PatientID),
        original.StudyInstanceUID,
        original.SOPInstanceUID,
        str(original.get("InstitutionName", "")),
    ]
    for path in (root / DATASET).rglob("*"):
        if path.is_file():
            content = path.read_bytes()
            assert KEY not in content and KEY.hex().encode() not in content, path
            for value in filter(None, identifying):
                assert value.encode() not in content, f"{value} in {path}"
    headers = json.loads(
        (root / DATASET / "5-smartscore-gated-0-5-sec.ome.zarr" / "headers.json").read_text()
    )
    assert len(headers) == 5
    assert all(h["00120062"]["Value"] == ["YES"] for h in headers)


def test_the_command_line_keeps_the_key_outside_the_data(tmp_path):
    config = tmp_path / "enclave.yaml"
    config.write_text(f"state_dir: {tmp_path / 'state'}\ndata_root: {tmp_path / 'data'}\n")
    folder = DICOMDIR_TESTS / "98892001" / "CT5N"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "enclave_hub.cli",
            "dataset",
            "ingest",
            "dicom",
            str(folder),
            "--dataset",
            "ds-cli",
            "--config",
            str(config),
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr + done.stdout
    key = tmp_path / "state" / "deid-keys" / "commons.key"
    assert key.stat().st_mode & 0o777 == 0o600
    secret = key.read_bytes()
    for path in (tmp_path / "data").rglob("*"):
        if path.is_file():
            assert secret not in path.read_bytes()


def test_instances_that_may_show_burned_in_text_are_quarantined_not_ingested(tmp_path):
    source = tmp_path / "incoming"
    shutil.copytree(DICOMDIR_TESTS / "98892001" / "CT5N", source / "ct")
    marked = pydicom.dcmread(source / "ct" / "2062")
    marked.BurnedInAnnotation = "YES"
    marked.save_as(source / "ct" / "2062")
    # A real secondary capture that does not say it is free of burned-in annotation.
    shutil.copy(get_testdata_file("SC_rgb_small_odd.dcm"), source / "capture.dcm")
    root, lines = tmp_path / "data", []
    outcomes = ingest_dicom(source, "ds-q", root, KEY, show_progress=False, report=lines.append)

    assert [o.object_id for o in outcomes] == [None, None]
    errors = " ".join(o.error for o in outcomes)
    assert "1 instance(s) may show burned-in annotation (quarantined, not ingested)" in errors
    assert marked.SeriesInstanceUID in errors
    held = root / ".quarantine" / "ds-q"
    assert held.stat().st_mode & 0o777 == 0o700
    kept = sorted(path.name.split("-", 1)[1] for path in held.iterdir())
    assert kept == ["2062", "capture.dcm"]
    assert not (root / "ds-q").exists(), "nothing quarantined is registered, not even a folder"
    assert lines[-1] == (
        "0 series ingested into ds-q; 2 refused and 0 file(s) skipped: the dataset was not created"
    )
