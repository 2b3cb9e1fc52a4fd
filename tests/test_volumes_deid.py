"""De-identification over every one of pydicom's test files: no attribute of the Basic Profile
keeps its value at any depth, UIDs are remapped consistently, pseudonyms follow the key, and
the key is in no output."""

from __future__ import annotations

import io

import pydicom
import pytest
from pydicom.data import get_testdata_file, get_testdata_files
from pydicom.errors import InvalidDicomError

from enclave.volumes.deid import (
    DUMMIES,
    EMPTY,
    REMAP,
    REMOVE,
    Deidentifier,
    action_for,
    has_burned_in_annotation,
)

KEY_A, KEY_B = b"project-a-key-0123456789abcdef", b"project-b-key-0123456789abcdef"
PSEUDONYMS = {pydicom.tag.Tag(0x0010, 0x0020), pydicom.tag.Tag(0x0010, 0x0010)}


def _readable_test_files() -> list[str]:
    found = []
    for path in sorted(get_testdata_files("*")):
        try:
            pydicom.dcmread(path, force=True).PatientID  # noqa: B018 (a header to de-identify)
        except (InvalidDicomError, AttributeError, OSError, ValueError, TypeError, EOFError):
            continue
        found.append(path)
    return found


FILES = _readable_test_files()


def _every_element(dataset):
    yield from dataset.iterall()
    if getattr(dataset, "file_meta", None) is not None:
        yield from dataset.file_meta.iterall()


def _uids(dataset) -> set[str]:
    return {
        str(value)
        for element in _every_element(dataset)
        if element.VR == "UI" and element.value
        for value in (element.value if element.VM > 1 else [element.value])
    }


def test_there_are_many_files_to_try():
    assert len(FILES) > 40


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.rsplit("/", 1)[-1])
def test_no_profile_attribute_keeps_its_value_at_any_depth(path):
    original = pydicom.dcmread(path, force=True)
    dataset = pydicom.dcmread(path, force=True)
    Deidentifier(KEY_A).apply(dataset)
    original_uids = _uids(original)
    for element in _every_element(dataset):
        tag, action = element.tag, action_for(element.tag)
        assert not tag.is_private, f"private {tag} left"
        assert action != REMOVE, f"{element.keyword or tag} should be removed"
        if tag in PSEUDONYMS:
            assert str(element.value).startswith("ENC")
        elif action == EMPTY:
            assert not element.value, f"{element.keyword} should be empty"
        elif action == REMAP and element.value:
            values = element.value if element.VM > 1 else [element.value]
            assert all(str(v).startswith("2.25.") for v in values)
            assert not {str(v) for v in values} & original_uids, f"{element.keyword} kept a UID"
        elif action is not None and element.VR != "SQ":
            assert element.value in (DUMMIES.get(element.VR), 0, b"", "ANONYMOUS", None)
    assert dataset.PatientIdentityRemoved == "YES"
    assert dataset.DeidentificationMethodCodeSequence[0].CodeValue == "113100"
    written = io.BytesIO()
    dataset.save_as(written, enforce_file_format=False)
    for key in (KEY_A, KEY_A.hex().encode()):
        assert key not in written.getvalue()


def test_uids_are_remapped_consistently_within_a_study_and_differ_per_key():
    first = pydicom.dcmread(get_testdata_file("dicomdirtests/98892001/CT5N/2062"))
    second = pydicom.dcmread(get_testdata_file("dicomdirtests/98892001/CT5N/2392"))
    other_key = pydicom.dcmread(get_testdata_file("dicomdirtests/98892001/CT5N/2062"))
    study = first.StudyInstanceUID
    assert second.StudyInstanceUID == study
    Deidentifier(KEY_A).apply(first)
    Deidentifier(KEY_A).apply(second)
    Deidentifier(KEY_B).apply(other_key)
    assert first.StudyInstanceUID == second.StudyInstanceUID != study
    assert first.SeriesInstanceUID == second.SeriesInstanceUID
    assert first.SOPInstanceUID != second.SOPInstanceUID
    assert first.file_meta.MediaStorageSOPInstanceUID == first.SOPInstanceUID
    assert other_key.StudyInstanceUID not in (study, first.StudyInstanceUID)


def test_pseudonyms_are_stable_within_a_project_and_differ_across_projects():
    def pseudonym(key: bytes) -> str:
        dataset = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
        Deidentifier(key).apply(dataset)
        assert dataset.PatientName == dataset.PatientID
        return str(dataset.PatientID)

    assert pseudonym(KEY_A) == pseudonym(KEY_A)
    assert pseudonym(KEY_A) != pseudonym(KEY_B)
    assert pseudonym(KEY_A) != str(pydicom.dcmread(get_testdata_file("CT_small.dcm")).PatientID)


def test_dates_move_by_one_offset_per_patient_when_asked():
    original = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    shifted = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    Deidentifier(KEY_A, shift_dates=True).apply(shifted)
    assert shifted.StudyDate and shifted.StudyDate != original.StudyDate
    codes = [item.CodeValue for item in shifted.DeidentificationMethodCodeSequence]
    assert codes == ["113100", "113107"]


def test_burned_in_annotation_is_detected():
    marked = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    assert has_burned_in_annotation(marked) is None
    marked.BurnedInAnnotation = "YES"
    assert "burned-in" in has_burned_in_annotation(marked)
    capture = pydicom.dcmread(get_testdata_file("SC_rgb_rle.dcm"))
    assert "secondary capture" in has_burned_in_annotation(capture)


def test_kept_text_is_cleaned_of_the_patients_own_values_in_any_case_or_order():
    """A sequence name, a study description and an image comment typed with the patient's
    name, id, birth date and accession number come out without them (the profile removes the
    last two; what it keeps is cleaned)."""
    dataset = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    dataset.PatientName = "Moreau^Élise^Anne"
    dataset.PatientID = "HX-40917"
    dataset.PatientBirthDate = "19610214"
    dataset.AccessionNumber = "ACC77120"
    dataset.SequenceName = "hx-40917 t1"
    dataset.StudyDescription = "BRAIN ÉLISE MOREAU 14/02/1961"
    dataset.ImageComments = "for MOREAU_Élise? acc77120; scan of anne"
    report = Deidentifier(KEY_A).apply(dataset)
    text = " ".join(
        str(dataset.get(keyword, ""))
        for keyword in ("SequenceName", "StudyDescription", "ImageComments")
    ).lower()
    for value in ("hx-40917", "moreau", "élise", "anne", "1961", "acc77120"):
        assert value not in text, value
    assert str(dataset.SequenceName) == "t1", "what is not identifying stays"
    assert "SequenceName" in report.cleaned  # the profile keeps it; the other two it removes
