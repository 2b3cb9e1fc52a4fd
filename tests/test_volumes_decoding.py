"""Compressed transfer syntaxes among pydicom's test files decode, with the installed decoders
(pylibjpeg and its plugins), to exactly the pixels of their uncompressed twins."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

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
