"""Compressed transfer syntaxes among pydicom's test files decode, with the installed decoders
(pylibjpeg and its plugins), to exactly the pixels of their uncompressed twins; uncompressed
pixels read straight from the file equal pydicom's decode."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from enclave.volumes.pixels import read_frames
from enclave.volumes.slices import find_slices, read_slices

TWINS = [
    ("MR_small.dcm", "MR_small_RLE.dcm"),
    ("MR_small.dcm", "MR_small_jp2klossless.dcm"),
    ("MR_small.dcm", "MR_small_jpeg_ls_lossless.dcm"),
    ("MR_small.dcm", "MR_small_bigendian.dcm"),
    ("rtdose.dcm", "rtdose_rle.dcm"),
    ("rtdose_1frame.dcm", "rtdose_rle_1frame.dcm"),
]


@pytest.mark.parametrize(("plain", "compressed"), TWINS)
def test_a_compressed_twin_decodes_to_the_same_pixels(plain, compressed):
    reference = pydicom.dcmread(get_testdata_file(plain))
    other = pydicom.dcmread(get_testdata_file(compressed))
    assert reference.file_meta.TransferSyntaxUID != other.file_meta.TransferSyntaxUID
    np.testing.assert_array_equal(other.pixel_array, reference.pixel_array)


def _native_test_files() -> list[Path]:
    """pydicom's test files whose pixels Enclave reads straight from the file."""
    slices, _ = find_slices(Path(get_testdata_file("CT_small.dcm")).parent)
    native = {s.path for s in slices if s.pixels.offset is not None}
    return sorted(path for path in native if path.name != "MR_truncated.dcm")


NATIVE = _native_test_files()


def test_most_uncompressed_test_files_are_read_straight_from_the_file():
    assert len(NATIVE) >= 30


@pytest.mark.parametrize("path", NATIVE, ids=[p.name for p in NATIVE])
def test_pixels_read_straight_from_the_file_equal_pydicoms_decode(path):
    (reference := pydicom.dcmread(path)).pixel_array  # noqa: B018 - decoded before comparing
    frames = read_frames(path, read_slices(path)[0].pixels)
    np.testing.assert_array_equal(frames, reference.pixel_array.reshape(frames.shape))


def test_bits_above_bits_stored_are_cleared_or_sign_extended(tmp_path):
    for signed, base in ((0, "CT_small.dcm"), (1, "MR_small.dcm")):
        dataset = pydicom.dcmread(get_testdata_file(base))
        pixels = dataset.pixel_array.astype(np.int16 if signed else np.uint16)
        stored = np.clip(pixels, -2048, 2047) if signed else pixels & 0x0FFF
        overlay = (stored.view(np.uint16) & 0x0FFF) | 0xA000  # stray bits above bit 11
        dataset.BitsStored, dataset.HighBit, dataset.PixelRepresentation = 12, 11, signed
        dataset.PixelData = overlay.tobytes()
        dataset.save_as(tmp_path / base)
        frames = read_frames(tmp_path / base, read_slices(tmp_path / base)[0].pixels)
        np.testing.assert_array_equal(frames[0], stored)


def test_truncated_pixel_data_is_an_error_naming_the_file():
    path = Path(get_testdata_file("MR_truncated.dcm"))
    with pytest.raises(ValueError, match=r"MR_truncated\.dcm: its pixel data is truncated"):
        read_frames(path, read_slices(path)[0].pixels)
