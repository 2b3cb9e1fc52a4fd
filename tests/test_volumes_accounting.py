"""Every source file of a DICOM ingest is accounted for: a damaged slice refuses its series by
name and never shortens it, series of different studies keep apart, and a run that ingests
nothing leaves no dataset."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

import enclave
from enclave.catalog import CatalogError
from enclave.volumes.ingest import ingest_dicom

CT = Path(get_testdata_file("CT_small.dcm")).parent / "dicomdirtests" / "98892001" / "CT5N"
MR = Path(__file__).resolve().parents[2] / "shared/data/dicom/dicom2nifti/generic/anatomical/001"
KEY = b"accounting-key-0123456789abcdefg"


def _by_position(folder: Path) -> list[Path]:
    """The files of a series, ordered along the slice normal."""

    def along(path: Path) -> float:
        header = pydicom.dcmread(path, stop_before_pixels=True)
        row, column = np.array(header.ImageOrientationPatient, float).reshape(2, 3)
        return float(np.array(header.ImagePositionPatient, float) @ np.cross(row, column))

    return sorted(folder.iterdir(), key=along)


def _ingest(source: Path, root: Path) -> tuple[list, list[str]]:
    lines: list[str] = []
    outcomes = ingest_dicom(source, "ds-a", root, KEY, show_progress=False, report=lines.append)
    return outcomes, lines


@pytest.mark.parametrize("which", ["end", "interior"])
def test_a_truncated_slice_refuses_its_series_by_name(tmp_path, which):
    if not MR.is_dir():
        pytest.skip(f"{MR} is absent: the shared sample data sits beside the checkout")
    source = tmp_path / "source"
    shutil.copytree(CT, source / "ct")
    shutil.copytree(MR, source / "mr")
    ordered = _by_position(source / "ct")
    damaged = ordered[0] if which == "end" else ordered[len(ordered) // 2]
    damaged.write_bytes(damaged.read_bytes()[:400])

    outcomes, lines = _ingest(source, tmp_path / "data")

    refused = [o for o in outcomes if o.error]
    assert len(refused) == 1 and str(damaged) in refused[0].error
    assert "ends at byte 400" in refused[0].error
    assert "spacing" not in refused[0].error
    manifest = json.loads((tmp_path / "data" / "ds-a" / "dataset.json").read_text())
    assert len(manifest["objects"]) == 1, "the MR beside it is ingested, nothing of the CT"
    (entry,) = manifest["objects"].values()
    assert sorted(entry["source_files"]) == sorted(f"mr/{p.name}" for p in MR.iterdir())
    (run,) = manifest["ingests"]
    (reason,) = run["refused"].values()
    assert f"ct/{damaged.name} is a damaged DICOM file" in reason and str(source) not in reason
    assert lines[-1].endswith("1 refused and 0 file(s) skipped")


def test_two_studies_with_a_series_4_each_become_two_objects(tmp_path):
    source = tmp_path / "source"
    for study in ("first", "second"):
        study_uid, series_uid = generate_uid(), generate_uid()
        (source / study).mkdir(parents=True)
        for path in CT.iterdir():
            header = pydicom.dcmread(path)
            header.StudyInstanceUID, header.SeriesInstanceUID = study_uid, series_uid
            header.SOPInstanceUID = header.file_meta.MediaStorageSOPInstanceUID = generate_uid()
            header.SeriesNumber = 4
            header.save_as(source / study / path.name)

    outcomes, _ = _ingest(source, tmp_path / "data")

    ids = sorted(o.object_id for o in outcomes)
    assert len(ids) == 2 and all(o.error is None for o in outcomes), outcomes
    assert ids[0] != ids[1] and all(i.startswith("4-smartscore-gated-0-5-sec-") for i in ids)


def test_a_run_that_ingests_nothing_leaves_no_dataset(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CatalogError, match="holds no DICOM image"):
        _ingest(empty, tmp_path / "data")
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "notes.txt").write_text("not an image\n")
    with pytest.raises(CatalogError, match=r"notes\.txt: not a DICOM file"):
        _ingest(notes, tmp_path / "data")

    cut = tmp_path / "cut"
    shutil.copytree(CT, cut)
    first = _by_position(cut)[0]
    first.write_bytes(first.read_bytes()[:400])
    outcomes, lines = _ingest(cut, tmp_path / "data")
    assert [o.object_id for o in outcomes] == [None]
    assert "the dataset was not created" in lines[-1]
    assert not (tmp_path / "data" / "ds-a").exists()


def test_a_float64_series_round_trips_bit_exactly(tmp_path):
    """Double Float Pixel Data stays float64, every bit of it."""
    source = tmp_path / "source"
    source.mkdir()
    rng = np.random.default_rng(7)
    written = {}
    for path in CT.iterdir():
        header = pydicom.dcmread(path)
        values = rng.normal(size=(header.Rows, header.Columns)) / 3 + 1e-9
        del header.PixelData
        for keyword in ("RescaleSlope", "RescaleIntercept", "PixelRepresentation", "BitsStored"):
            header.pop(keyword, None)
        header.HighBit = 63
        header.BitsAllocated = 64
        header.DoubleFloatPixelData = values.tobytes()
        header.save_as(source / path.name)
        written[path.name] = values

    outcomes, _ = _ingest(source, tmp_path / "data")

    (outcome,) = outcomes
    volume = enclave.open_volume(f"ds-a/{outcome.object_id}", tmp_path / "data")
    assert volume.dtype == np.float64
    expected = np.stack([written[path.name] for path in _by_position(source)])
    assert np.array_equal(volume.values, expected)
