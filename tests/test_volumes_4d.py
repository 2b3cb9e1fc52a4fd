"""4D MRI (functional and diffusion) loads as one volume with a leading volume axis and exports
as dicom2nifti converts it: series built from a real 3D one as each vendor stores a 4D
acquisition (single-frame slices, Siemens' private diffusion elements, GE's, a Siemens mosaic,
an enhanced multi-frame object), each checked against dicom2nifti's own conversion."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import napari
import nibabel
import numpy as np
import pydicom
import pytest
import zarr
from dicom2nifti.convert_dicom import dicom_array_to_nifti
from ome_zarr_models.v05.image import Image as OmeImage
from pydicom.sequence import Sequence
from pydicom.uid import generate_uid

import enclave
from enclave.volumes.ingest import ingest_dicom
from enclave.volumes.series import SeriesError, group_series, read_volume, split_volumes
from enclave.volumes.slices import find_slices
from enclave.volumes.store import write_volume

ANATOMICAL = (
    Path(__file__).resolve().parents[2] / "shared/data/dicom/dicom2nifti/generic/anatomical/001"
)
# Three diffusion volumes: b = 0, then two directions in the patient frame (LPS).
DIFFUSION = [(0, (0.0, 0.0, 0.0)), (1000, (1.0, 0.0, 0.0)), (1000, (0.0, 0.6, 0.8))]
VENDORS = {"siemens": "SIEMENS", "ge": "GE MEDICAL SYSTEMS", "standard": "UNKNOWN"}


def _anatomical() -> list[pydicom.Dataset]:
    """dicom2nifti's sagittal 4-slice series, ordered along the slice normal."""
    if not ANATOMICAL.is_dir():
        pytest.skip(f"{ANATOMICAL} is absent: the shared sample data sits beside the checkout")
    slices = [pydicom.dcmread(path) for path in sorted(ANATOMICAL.iterdir())]
    row, column = np.array(slices[0].ImageOrientationPatient, float).reshape(2, 3)
    normal = np.cross(row, column)
    return sorted(slices, key=lambda s: np.array(s.ImagePositionPatient, float) @ normal)


def _encode(header: pydicom.Dataset, vendor: str, volume: int) -> None:
    """Write volume `volume`'s diffusion encoding where `vendor` keeps it."""
    b_value, gradient = DIFFUSION[volume]
    header.Manufacturer = VENDORS[vendor]
    if vendor == "standard":
        header.DiffusionBValue = float(b_value)
        header.DiffusionGradientOrientation = list(gradient)
    elif vendor == "siemens":
        block = header.private_block(0x0019, "SIEMENS MR HEADER", create=True)
        block.add_new(0x0C, "IS", b_value)
        block.add_new(0x0E, "FD", list(gradient))
    else:  # GE: along its image axes (the first two against row and column), a nominal b
        row, column = np.array(header.ImageOrientationPatient, float).reshape(2, 3)
        along = [-np.dot(gradient, row), -np.dot(gradient, column)]
        along.append(np.dot(gradient, np.cross(row, column)))
        block = header.private_block(0x0043, "GEMS_PARM_01", create=True)
        block.add_new(0x39, "IS", [b_value, 0, 0, 0])
        acquisition = header.private_block(0x0019, "GEMS_ACQU_01", create=True)
        for element, value in zip((0xBB, 0xBC, 0xBD), along, strict=True):
            acquisition.add_new(element, "DS", f"{value + 0.0:.6f}")


def _save(header: pydicom.Dataset, folder: Path) -> None:
    header.SOPInstanceUID = header.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    folder.mkdir(parents=True, exist_ok=True)
    header.save_as(folder / f"{generate_uid()}.dcm")  # file names in no order


def _single_frame(folder: Path, volumes: int, vendor: str | None = None) -> Path:
    """The anatomical series taken `volumes` times in one series, as a 4D acquisition stores
    it: every slice position once per volume, each volume's values its own."""
    series = generate_uid()
    for volume in range(volumes):
        for place, header in enumerate(_anatomical()):
            header.SeriesInstanceUID = series
            header.InstanceNumber = volume * 10 + place + 1
            header.AcquisitionNumber = volume + 1
            header.PixelData = (header.pixel_array + 7 * volume).astype(np.uint16).tobytes()
            if vendor:
                _encode(header, vendor, volume)
            _save(header, folder)
    return folder


def _csa(tags: dict[str, tuple[str, list]]) -> bytes:
    """A Siemens CSA2 header holding `tags` (name: (VR, values))."""
    packed = b"SV10\x04\x03\x02\x01" + struct.pack("<2I", len(tags), 77)
    for name, (vr, values) in tags.items():
        packed += struct.pack("<64si4s3i", name.encode(), len(values), vr.encode(), 0, 6, 77)
        for item in [*(str(v).encode() + b"\0" for v in values), *[b""] * (6 - len(values))]:
            packed += struct.pack("<4i", len(item), len(item), 77, len(item))
            packed += item + b"\0" * (-len(item) % 4)
    return packed


def _mosaic(folder: Path, volumes: int) -> Path:
    """The anatomical series as a Siemens diffusion mosaic: each volume one image, its four
    slices tiled 2 by 2, placed by the CSA and ASCCONV headers as the scanner writes them."""
    slices = _anatomical()
    first = slices[0]
    rows, columns = int(first.Rows), int(first.Columns)
    row, column = np.array(first.ImageOrientationPatient, float).reshape(2, 3)
    normal = np.cross(row, column)
    spacing = float(
        (np.array(slices[1].ImagePositionPatient) - first.ImagePositionPatient) @ normal
    )
    along_rows, along_columns = (float(v) for v in first.PixelSpacing)
    corner = (
        np.array(first.ImagePositionPatient, float)
        - row * along_columns * columns / 2
        - column * along_rows * rows / 2
    )
    ascconv = "### ASCCONV BEGIN ###\nsSliceArray.lSize = 4\n" + "".join(
        f"sSliceArray.asSlice[{k}].sPosition.dTra = {k}.0\n" for k in range(4)
    )
    series = generate_uid()
    for volume in range(volumes):
        tiles = [s.pixel_array + 7 * volume for s in slices]
        header = pydicom.dcmread(next(ANATOMICAL.iterdir()))
        header.SeriesInstanceUID, header.InstanceNumber = series, volume + 1
        header.AcquisitionNumber = volume + 1
        header.ImageType = ["ORIGINAL", "PRIMARY", "DIFFUSION", "NONE", "ND", "MOSAIC"]
        header.Rows, header.Columns = 2 * rows, 2 * columns
        header.ImagePositionPatient = [float(v) for v in corner]
        header.SpacingBetweenSlices = spacing
        header.AcquisitionMatrix = [columns, 0, 0, rows]
        mosaic = np.block([[tiles[0], tiles[1]], [tiles[2], tiles[3]]]).astype(np.uint16)
        header.PixelData = mosaic.tobytes()
        csa = header.private_block(0x0029, "SIEMENS CSA HEADER", create=True)
        image = {"NumberOfImagesInMosaic": ("US", [4]), "SliceNormalVector": ("FD", normal)}
        csa.add_new(0x10, "OB", _csa(image))
        protocol = ascconv + "### ASCCONV END ###\n"
        csa.add_new(0x20, "OB", _csa({"MrPhoenixProtocol": ("UN", [protocol])}))
        _encode(header, "siemens", volume)
        _save(header, folder)
    return folder


def _enhanced(folder: Path, target: Path) -> Path:
    """A 4D single-frame series as one enhanced MR object: a frame per slice, each with its
    position, orientation and temporal position in its own functional groups."""
    files = sorted(folder.iterdir())
    headers = [pydicom.dcmread(path) for path in files]
    first = headers[0]
    enhanced = pydicom.dcmread(files[0])
    del enhanced.ImagePositionPatient, enhanced.ImageOrientationPatient, enhanced.PixelSpacing
    frames = []
    for header in headers:
        groups = pydicom.Dataset()
        position, orientation, measures, content = (pydicom.Dataset() for _ in range(4))
        position.ImagePositionPatient = header.ImagePositionPatient
        orientation.ImageOrientationPatient = header.ImageOrientationPatient
        measures.PixelSpacing = header.PixelSpacing
        measures.SliceThickness = header.get("SliceThickness", 1)
        content.TemporalPositionIndex = int(header.AcquisitionNumber)
        groups.PlanePositionSequence = Sequence([position])
        groups.PlaneOrientationSequence = Sequence([orientation])
        groups.PixelMeasuresSequence = Sequence([measures])
        groups.FrameContentSequence = Sequence([content])
        frames.append(groups)
    enhanced.PerFrameFunctionalGroupsSequence = Sequence(frames)
    enhanced.SharedFunctionalGroupsSequence = Sequence([pydicom.Dataset()])
    enhanced.NumberOfFrames = len(headers)
    enhanced.SOPClassUID = pydicom.uid.EnhancedMRImageStorage
    enhanced.file_meta.MediaStorageSOPClassUID = enhanced.SOPClassUID
    enhanced.PixelData = b"".join(h.PixelData for h in headers)
    enhanced.SeriesInstanceUID = first.SeriesInstanceUID
    target.parent.mkdir(parents=True, exist_ok=True)
    enhanced.save_as(target)
    return target


def _read(folder: Path):
    slices, skipped = find_slices(folder)
    assert not skipped
    (series,) = group_series(slices)
    return series, *read_volume(series)


def _acquired(header: pydicom.Dataset) -> tuple[int, int]:
    return int(header.AcquisitionNumber), int(header.InstanceNumber)


def _exported(folder: Path, tmp_path: Path):
    """Enclave's NIfTI of the 4D series in `folder` (through a store) beside dicom2nifti's,
    both in their closest canonical voxel order; and Enclave's NIfTI path."""
    series, voxels, geometry = _read(folder)
    store = write_volume(tmp_path / "store.ome.zarr", "four-d", voxels, geometry, "MR", "arbitrary")
    assert store["volumes"]["count"] == voxels.shape[0]
    opened = enclave.open_volume(tmp_path / "store.ome.zarr")
    ours = opened.volume.to_nifti(tmp_path / "ours.nii.gz")
    theirs = tmp_path / "dicom2nifti" / "theirs.nii.gz"
    theirs.parent.mkdir()
    # dicom2nifti checks the first and last slices it is given before it sorts them: it gets
    # them in acquisition order, as a scanner exports them (Enclave read them in no order).
    headers = sorted((pydicom.dcmread(path) for path in series.paths), key=_acquired)
    dicom_array_to_nifti(headers, str(theirs), reorient_nifti=False)
    canonical = [nibabel.as_closest_canonical(nibabel.load(p)) for p in (ours, theirs)]
    return canonical, ours, theirs


def _assert_same_image(ours: nibabel.Nifti1Image, theirs: nibabel.Nifti1Image) -> None:
    assert ours.shape == theirs.shape
    np.testing.assert_allclose(ours.affine, theirs.affine, atol=1e-4)
    np.testing.assert_array_equal(np.asarray(ours.dataobj), np.asarray(theirs.dataobj))
    assert ours.header["pixdim"][4] == pytest.approx(theirs.header["pixdim"][4])


def test_a_functional_series_is_a_time_series_as_dicom2nifti_converts_it(tmp_path):
    folder = _single_frame(tmp_path / "fmri", 3)
    _, voxels, geometry = _read(folder)
    assert voxels.shape == (3, 4, 256, 256)
    assert geometry.axis.name == "t" and geometry.axis.repetition_time_ms == 6000
    for volume in range(3):  # in acquisition order, each volume its own values
        np.testing.assert_array_equal(voxels[volume] - voxels[0], 7 * volume)

    (ours, theirs), written, _ = _exported(folder, tmp_path)
    _assert_same_image(ours, theirs)
    written = nibabel.load(written)
    assert written.shape == (256, 256, 4, 3) and written.header["pixdim"][4] == 6.0

    opened = enclave.open_volume(tmp_path / "store.ome.zarr")
    assert opened.dims == ("t", "z", "y", "x")
    assert opened["t"].values.tolist() == [0.0, 6.0, 12.0]
    OmeImage.from_zarr(zarr.open_group(tmp_path / "store.ome.zarr", mode="r"))
    data, options, _ = opened.volume.to_napari()  # a napari layer, time in seconds
    layer = napari.layers.Image(data, **options)
    assert layer.data.shape == (3, 4, 256, 256) and layer.scale[0] == 6.0
    assert [str(unit) for unit in layer.units] == ["second", *["millimeter"] * 3]


@pytest.mark.parametrize("vendor", ["siemens", "ge"])
def test_a_diffusion_series_carries_its_b_values_and_gradients_as_dicom2nifti_writes_them(
    tmp_path, vendor
):
    folder = _single_frame(tmp_path / vendor, 3, vendor)
    (ours, theirs), our_file, their_file = _exported(folder, tmp_path)
    _assert_same_image(ours, theirs)
    for suffix in (".bval", ".bvec"):
        mine = Path(str(our_file).removesuffix(".nii.gz") + suffix)
        reference = Path(str(their_file).removesuffix(".nii.gz") + suffix)
        np.testing.assert_allclose(
            np.loadtxt(mine, ndmin=2), np.loadtxt(reference, ndmin=2), atol=1e-5
        )
    assert Path(str(our_file).removesuffix(".nii.gz") + ".bval").read_text() == "0 1000 1000\n"


def test_standard_diffusion_attributes_give_gradients_in_the_image_frame(tmp_path):
    _, voxels, geometry = _read(_single_frame(tmp_path / "standard", 3, "standard"))
    axis = geometry.axis
    assert axis.name == "volume" and axis.b_values == (0, 1000, 1000)
    # Sagittal: rows run along +y (anterior to posterior), columns along -z, the normal -x.
    np.testing.assert_allclose(axis.gradients, [(0, 0, 0), (0, 0, -1), (0.6, -0.8, 0)], atol=1e-9)

    write_volume(tmp_path / "dwi.ome.zarr", "dwi", voxels, geometry, "MR", "arbitrary")
    opened = enclave.open_volume(tmp_path / "dwi.ome.zarr")
    assert opened.dims == ("volume", "z", "y", "x")
    assert opened["b_value"].values.tolist() == [0, 1000, 1000]
    chosen = opened.sel(volume=opened["b_value"] > 0)  # a selection keeps its own encoding
    chosen.volume.to_nifti(tmp_path / "weighted.nii")
    assert (tmp_path / "weighted.bval").read_text() == "1000 1000\n"
    bvec = np.loadtxt(tmp_path / "weighted.bvec")
    np.testing.assert_allclose(bvec, [[0, 0.6], [0, 0.8], [-1, 0]], atol=1e-9)


def test_a_siemens_mosaic_is_cut_into_its_slices_as_dicom2nifti_does(tmp_path):
    folder = _mosaic(tmp_path / "mosaic", 3)
    series, voxels, geometry = _read(folder)
    assert len(series.paths) == 3 and voxels.shape == (3, 4, 256, 256)
    single, single_geometry = read_volume(group_series(find_slices(ANATOMICAL)[0])[0])
    np.testing.assert_array_equal(voxels[2], single + 14)  # the tiles are the slices
    np.testing.assert_allclose(geometry.affine(), single_geometry.affine(), atol=1e-6)

    (ours, theirs), our_file, their_file = _exported(folder, tmp_path)
    _assert_same_image(ours, theirs)
    for suffix in (".bval", ".bvec"):
        mine = Path(str(our_file).removesuffix(".nii.gz") + suffix)
        reference = Path(str(their_file).removesuffix(".nii.gz") + suffix)
        np.testing.assert_allclose(np.loadtxt(mine), np.loadtxt(reference), atol=1e-5)


def test_a_mosaic_without_its_csa_header_is_refused_saying_so(tmp_path):
    folder = _mosaic(tmp_path / "mosaic", 2)
    for path in folder.iterdir():
        header = pydicom.dcmread(path)
        del header[0x00291010]
        header.save_as(path)
    series, *_ = group_series(find_slices(folder)[0])
    with pytest.raises(SeriesError, match="a Siemens mosaic whose header does not say"):
        read_volume(series)


def test_an_enhanced_multiframe_4d_object_reads_as_its_single_frame_series(tmp_path):
    folder = _single_frame(tmp_path / "fmri", 3)
    path = _enhanced(folder, tmp_path / "enhanced" / "fmri.dcm")
    _, voxels, geometry = _read(path.parent)
    _, expected, expected_geometry = _read(folder)
    np.testing.assert_array_equal(voxels, expected)
    np.testing.assert_allclose(geometry.affine(), expected_geometry.affine())
    assert geometry.axis.count == 3


def test_a_4d_series_splits_into_its_volumes_in_acquisition_order(tmp_path):
    (series,) = group_series(find_slices(_single_frame(tmp_path / "dwi", 3, "standard"))[0])
    volumes = split_volumes(series)
    assert [{s.acquisition.acquisition for s in v.slices} for v in volumes] == [{1}, {2}, {3}]
    assert [{s.acquisition.b_value for s in v.slices} for v in volumes] == [{0}, {1000}, {1000}]


def test_positions_taken_unevenly_are_refused(tmp_path):
    folder = _single_frame(tmp_path / "fmri", 2)
    next(folder.iterdir()).unlink()
    (series,) = group_series(find_slices(folder)[0])
    with pytest.raises(SeriesError, match="taken 1 to 2 times"):
        read_volume(series)


def test_a_diffusion_series_ingests_as_one_4d_object(tmp_path):
    source = _single_frame(tmp_path / "source", 3, "siemens")
    outcomes = ingest_dicom(source, "dwi", tmp_path / "data", b"k" * 32, show_progress=False)
    (outcome,) = outcomes
    assert outcome.error is None
    entry = json.loads((tmp_path / "data" / "dwi" / "dataset.json").read_text())
    (record,) = [o for o in entry["objects"].values()]
    assert record["pixels"]["shape"] == [3, 4, 256, 256]
    assert record["pixels"]["volumes"]["b_values"] == [0, 1000, 1000]
    opened = enclave.open_volume(f"dwi/{outcome.object_id}", root=tmp_path / "data")
    assert opened.dims == ("volume", "z", "y", "x")
    assert opened.sizes["volume"] == 3
