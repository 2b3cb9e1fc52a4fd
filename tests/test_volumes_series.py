"""DICOM series become volumes only with a regular geometry: real series from dicom2nifti's
and pydicom's test data, checked against dicom2nifti's ground truth or refused with the reason."""

from __future__ import annotations

from pathlib import Path

import nibabel
import numpy as np
import pydicom
import pytest
import zarr
from ome_zarr_models.v05.image import Image as OmeImage
from pydicom.data import get_testdata_file

import enclave
from enclave.volumes.series import (
    SeriesError,
    group_series,
    read_volume,
    slice_geometry,
)
from enclave.volumes.slices import find_slices

DICOM = Path(__file__).resolve().parents[2] / "shared" / "data" / "dicom" / "dicom2nifti"
DICOMDIR_TESTS = Path(get_testdata_file("CT_small.dcm")).parent / "dicomdirtests"


def _folder(path: Path) -> Path:
    if not path.is_dir():
        pytest.skip(f"sample series {path} is absent (../shared/data is not beside the checkout)")
    return path


def _only_series(folder: Path):
    slices, skipped = find_slices(folder)
    assert not skipped
    (series,) = group_series(slices)
    return series


def test_the_anatomical_series_matches_dicom2niftis_ground_truth():
    series = _only_series(_folder(DICOM / "generic" / "anatomical" / "001"))
    volume, geometry = read_volume(series)
    assert volume.shape == (4, 256, 256)
    ours = nibabel.Nifti1Image(volume.transpose(2, 1, 0), geometry.affine("RAS"))
    truth = nibabel.load(DICOM / "generic" / "anatomical" / "001_ground_truth.nii.gz")
    # Both brought to the closest canonical (RAS+) orientation: the same voxels, the same map.
    ours, truth = nibabel.as_closest_canonical(ours), nibabel.as_closest_canonical(truth)
    np.testing.assert_allclose(ours.affine, truth.affine, atol=1e-3)
    np.testing.assert_array_equal(np.asarray(ours.dataobj), np.asarray(truth.dataobj))


def test_spacing_comes_from_positions_and_slices_are_ordered_along_the_normal():
    series = _only_series(DICOMDIR_TESTS / "98892001" / "CT5N")
    ordered, geometry = slice_geometry(series)
    assert len(ordered) == 5
    assert geometry.spacing[0] == pytest.approx(2.5)
    along = [np.dot(i.position, geometry.directions[:, 2]) for i in ordered]
    assert along == sorted(along)
    volume, _ = read_volume(series)
    assert volume.shape == (5, 16, 16)


def test_a_ct_volume_is_in_hounsfield_units():
    series = _only_series(DICOMDIR_TESTS / "98892001" / "CT5N")
    volume, _ = read_volume(series)
    first = pydicom.dcmread(slice_geometry(series)[0][0].path)
    expected = first.pixel_array * float(first.RescaleSlope) + float(first.RescaleIntercept)
    np.testing.assert_array_equal(volume[0], expected)


@pytest.mark.parametrize(
    ("folder", "reason"),
    [
        (DICOMDIR_TESTS / "77654033" / "CT2", "slice(s) missing between"),
        (DICOMDIR_TESTS / "98892003" / "MR700", "the orientation changes within the series"),
        (DICOM / "failing" / "sliceincrement" / "001", "1 slice(s) missing between"),
        (DICOM / "failing" / "slicecount" / "001", "too few slices (2, at least 3)"),
    ],
)
def test_irregular_series_are_refused_with_the_reason_and_the_series_named(folder, reason):
    series = _only_series(_folder(folder))
    with pytest.raises(SeriesError) as refused:
        read_volume(series)
    message = str(refused.value)
    assert reason in message
    assert series.uid in message, "the message names the series"


def test_a_volume_written_to_a_store_opens_in_millimetres_and_exports_to_nifti(tmp_path):
    from enclave.volumes.store import write_volume

    series = _only_series(_folder(DICOM / "generic" / "anatomical" / "001"))
    voxels, geometry = read_volume(series)
    store = tmp_path / "anatomical.ome.zarr"
    record = write_volume(store, "anatomical", voxels, geometry, series.modality, series.units)
    assert record["shape"] == [4, 256, 256] and record["modality"] == "MR"
    OmeImage.from_zarr(zarr.open_group(store, mode="r"))

    volume = enclave.open_volume(store)
    assert volume.dims == ("z", "y", "x")
    np.testing.assert_array_equal(volume.values, voxels)
    assert float(volume.z[1]) == pytest.approx(geometry.spacing[0])
    np.testing.assert_allclose(volume.volume.affine("LPS"), geometry.affine("LPS"))
    assert volume.attrs["modality"] == "MR"

    exported = nibabel.as_closest_canonical(
        nibabel.load(volume.volume.to_nifti(tmp_path / "v.nii.gz"))
    )
    truth = nibabel.as_closest_canonical(
        nibabel.load(DICOM / "generic" / "anatomical" / "001_ground_truth.nii.gz")
    )
    np.testing.assert_allclose(exported.affine, truth.affine, atol=1e-3)
    np.testing.assert_array_equal(np.asarray(exported.dataobj), np.asarray(truth.dataobj))
