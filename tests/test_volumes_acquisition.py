"""A slice's place in a 4D acquisition, from the standard attributes, an enhanced frame's
functional groups, or the private elements Siemens and GE keep diffusion in."""

from __future__ import annotations

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from enclave.volumes.acquisition import acquisition_of


def _header(**attributes) -> Dataset:
    header = Dataset()
    header.InstanceNumber, header.AcquisitionNumber, header.RepetitionTime = 7, 2, 3000
    for keyword, value in attributes.items():
        setattr(header, keyword, value)
    return header


def test_standard_attributes():
    found = acquisition_of(
        _header(DiffusionBValue=800.0, DiffusionGradientOrientation=[0.0, 0.6, 0.8])
    )
    assert (found.instance, found.acquisition, found.repetition_time_ms) == (7, 2, 3000.0)
    assert (found.b_value, found.gradient, found.gradient_frame) == (
        800.0,
        (0, 0.6, 0.8),
        "patient",
    )


def test_an_enhanced_frame_reads_its_own_groups_before_the_shared_ones():
    content, diffusion, direction = Dataset(), Dataset(), Dataset()
    content.TemporalPositionIndex = 5
    direction.DiffusionGradientOrientation = [1.0, 0.0, 0.0]
    diffusion.DiffusionBValue = 1000.0
    diffusion.DiffusionGradientDirectionSequence = Sequence([direction])
    own, shared = Dataset(), Dataset()
    own.FrameContentSequence = Sequence([content])
    own.MRDiffusionSequence = Sequence([diffusion])
    found = acquisition_of(_header(), (own, shared))
    assert (found.temporal, found.b_value, found.gradient) == (5, 1000.0, (1.0, 0.0, 0.0))


def test_siemens_and_ge_private_diffusion_elements():
    siemens = _header()
    siemens.add_new(0x0019100C, "IS", "1000")
    siemens.add_new(0x0019100E, "FD", [0.0, 1.0, 0.0])
    found = acquisition_of(siemens)
    assert (found.b_value, found.gradient, found.gradient_frame) == (1000.0, (0, 1, 0), "patient")
    ge = _header()
    ge.add_new(0x00431039, "IS", ["1000", "8", "0", "0"])
    for tag, value in zip((0x001910BB, 0x001910BC, 0x001910BD), ("0.6", "0.8", "0"), strict=True):
        ge.add_new(tag, "DS", value)
    found = acquisition_of(ge)  # GE's first two axes point against the row and column
    assert (found.b_value, found.gradient) == (1000.0, (-0.6, -0.8, 0))
    assert found.gradient_frame == "image"
    ge[0x001910BB].value, ge[0x001910BC].value = "0.3", "0.4"  # a half-length gradient:
    assert acquisition_of(ge).b_value == 250.0  # a quarter of the nominal b-value
    assert acquisition_of(_header()).b_value is None
