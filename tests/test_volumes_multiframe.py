"""Multi-frame objects become volumes frame by frame: enhanced objects placed by their
per-frame functional groups (made from real series by highdicom's legacy converter, an
independent implementation of the standard), RT dose grids by their frame offsets; frames that
nothing places are refused."""

from __future__ import annotations

from pathlib import Path

import highdicom
import nibabel
import numpy as np
import pydicom
import pytest
from highdicom.legacy import LegacyConvertedEnhancedCTImage, LegacyConvertedEnhancedMRImage
from pydicom.data import get_testdata_file
from pydicom.uid import RLELossless

from enclave.volumes.series import SeriesError, group_series, read_volume
from enclave.volumes.slices import find_slices, read_slices

DICOM = Path(__file__).resolve().parents[2] / "shared" / "data" / "dicom" / "dicom2nifti"
CT5N = Path(get_testdata_file("CT_small.dcm")).parent / "dicomdirtests" / "98892001" / "CT5N"


def _volume_of(folder: Path):
    slices, _ = find_slices(folder)
    (series,) = group_series(slices)
    return read_volume(series), series


def _enhanced(converter, folder: Path, target: Path, **options) -> Path:
    """The single-frame series in `folder` as one enhanced object, its frames shuffled."""
    legacy = [pydicom.dcmread(path) for path in sorted(folder.iterdir())]
    legacy = [legacy[k] for k in np.random.default_rng(5).permutation(len(legacy))]
    converted = converter(
        legacy,
        series_instance_uid=highdicom.UID(),
        series_number=90,
        sop_instance_uid=highdicom.UID(),
        instance_number=1,
        **options,
    )
    converted.save_as(target)
    return target


@pytest.mark.parametrize("transfer_syntax", [None, RLELossless], ids=["native", "rle"])
def test_an_enhanced_ct_gives_the_volume_of_its_single_frame_series(tmp_path, transfer_syntax):
    path = _enhanced(
        LegacyConvertedEnhancedCTImage,
        CT5N,
        tmp_path / "enhanced-ct.dcm",
        transfer_syntax_uid=transfer_syntax,
    )
    slices = read_slices(path)
    assert [s.frame for s in slices] == [0, 1, 2, 3, 4]
    (series,) = group_series(slices)
    volume, geometry = read_volume(series)
    (expected, expected_geometry), _ = _volume_of(CT5N)
    np.testing.assert_array_equal(volume, expected)
    np.testing.assert_allclose(geometry.affine("LPS"), expected_geometry.affine("LPS"))
    assert series.units == "HU"


def test_an_enhanced_mr_matches_dicom2niftis_ground_truth(tmp_path):
    folder = DICOM / "generic" / "anatomical" / "001"
    if not folder.is_dir():
        pytest.skip(f"sample series {folder} is absent (../shared/data is not beside the checkout)")
    path = _enhanced(LegacyConvertedEnhancedMRImage, folder, tmp_path / "enhanced-mr.dcm")
    (series,) = group_series(read_slices(path))
    volume, geometry = read_volume(series)
    ours = nibabel.as_closest_canonical(
        nibabel.Nifti1Image(volume.transpose(2, 1, 0), geometry.affine("RAS"))
    )
    truth = nibabel.as_closest_canonical(
        nibabel.load(DICOM / "generic" / "anatomical" / "001_ground_truth.nii.gz")
    )
    np.testing.assert_allclose(ours.affine, truth.affine, atol=1e-3)
    np.testing.assert_array_equal(np.asarray(ours.dataobj), np.asarray(truth.dataobj))


@pytest.mark.parametrize("name", ["rtdose.dcm", "rtdose_expb.dcm", "rtdose_rle.dcm"])
def test_an_rt_dose_grid_is_placed_by_its_frame_offsets_and_scaled_to_dose(name):
    path = Path(get_testdata_file(name))
    (series,) = group_series(read_slices(path))
    volume, geometry = read_volume(series)
    header = pydicom.dcmread(path)
    assert volume.shape == (header.NumberOfFrames, header.Rows, header.Columns)
    np.testing.assert_allclose(
        volume, header.pixel_array * float(header.DoseGridScaling), rtol=1e-6
    )
    offsets = [float(v) for v in header.GridFrameOffsetVector]
    assert geometry.spacing[0] == pytest.approx(offsets[1] - offsets[0])
    assert geometry.origin == pytest.approx([float(v) for v in header.ImagePositionPatient])
    assert series.units == {"GY": "Gy", "RELATIVE": "relative"}[header.DoseUnits]


def test_frames_that_nothing_places_are_refused_as_not_a_volume():
    path = Path(get_testdata_file("examples_ybr_color.dcm"))  # an ultrasound cine loop
    (series,) = group_series(read_slices(path))
    with pytest.raises(SeriesError, match="not placed in space"):
        read_volume(series)
