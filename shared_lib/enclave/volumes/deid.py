"""De-identifying DICOM headers: PS3.15 Annex E, Basic Application Level Confidentiality
Profile, with keyed pseudonyms.

The profile's table (Table E.1-1, edition 2026c) comes from the `dicom-anonymizer` package;
this module applies it at every sequence depth. Where the profile allows a choice, the
strictest is taken: X (remove) before Z (empty) before D (dummy). Private elements go.
UIDs are remapped to `2.25.<number>` by a keyed HMAC of the original, so the same original
always becomes the same new UID under one key and a different one under another. The
patient's id and name become one pseudonym, a keyed HMAC of the original id; with
`shift_dates`, dates move by an offset fixed per patient (also from the key) instead of being
emptied. Every text attribute kept is then cleaned of the patient's own identifying values
(`descriptors`). The key itself never enters a dataset.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta

from dicomanonymizer.dicom_anonymization_databases import dicomfields_2026c as annex_e
from pydicom.datadict import keyword_for_tag
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag, Tag

from ..persons import SourceManifest
from ..pseudonyms import Pseudonymizer
from .descriptors import IdentifyingValues

REMOVE, EMPTY, DUMMY, REMAP = "X", "Z", "D", "U"
PROFILE_EDITION = "2026c"
PATIENT_ID, PATIENT_NAME = Tag(0x0010, 0x0020), Tag(0x0010, 0x0010)
DATE_VRS = ("DA", "DT")


def profile_actions() -> tuple[dict[BaseTag, str], list[tuple[int, int, int, int, str]]]:
    """Each attribute of the Basic Profile and what is done to it here; then the repeating
    groups (curves 50xx, overlays 60xx) as (group, element, group mask, element mask, action)."""
    actions: dict[BaseTag, str] = {}
    masked = []
    choices = [
        (annex_e.D_TAGS, DUMMY),
        (annex_e.Z_D_TAGS, EMPTY),
        (annex_e.Z_TAGS, EMPTY),
        (annex_e.U_TAGS, REMAP),
        (annex_e.X_TAGS, REMOVE),
        (annex_e.X_D_TAGS, REMOVE),
        (annex_e.X_Z_TAGS, REMOVE),
        (annex_e.X_Z_D_TAGS, REMOVE),
        (annex_e.X_Z_U_STAR_TAGS, REMOVE),
    ]
    for entries, action in choices:
        for entry in entries:
            if len(entry) == 2:
                actions[Tag(*entry)] = action
            else:
                masked.append((*entry, action))
    return actions, masked


ACTIONS, MASKED_ACTIONS = profile_actions()


def action_for(tag: BaseTag) -> str | None:
    """The profile's action for an attribute, or None when it is kept."""
    action = ACTIONS.get(tag)
    if action is not None:
        return action
    for group, element, group_mask, element_mask, masked in MASKED_ACTIONS:
        if tag.group & group_mask == group and tag.element & element_mask == element:
            return masked
    return None


DUMMIES = {
    "PN": "ANONYMOUS",
    "DA": "19000101",
    "TM": "000000",
    "DT": "19000101000000",
    "AS": "000Y",
    "IS": "0",
    "DS": "0",
    "CS": "ANONYMOUS",
    "UI": "2.25.0",
}


@dataclass
class Report:
    """What de-identifying one instance did, for dataset.json (names only, never values)."""

    removed: set[str] = field(default_factory=set)
    emptied: set[str] = field(default_factory=set)
    replaced: set[str] = field(default_factory=set)
    remapped_uids: int = 0
    private_removed: int = 0
    cleaned: set[str] = field(default_factory=set)  # kept text that held identifying values


def _name(tag: BaseTag) -> str:
    return keyword_for_tag(tag) or f"({tag.group:04X},{tag.element:04X})"


def _shift(value: str, vr: str, shift: timedelta) -> str:
    day = date(int(value[:4]), int(value[4:6]), int(value[6:8])) + shift
    return day.strftime("%Y%m%d") + (value[8:] if vr == "DT" else "")


class Deidentifier:
    """Applies the profile to datasets, in place."""

    def __init__(
        self, key: bytes, shift_dates: bool = False, manifest: SourceManifest | None = None
    ):
        self.pseudonyms = Pseudonymizer(key)
        self.shift_dates = shift_dates
        self.manifest = manifest

    def apply(self, dataset: Dataset) -> Report:
        """De-identify `dataset`; its patient becomes the pseudonym of their patient id (the
        one the manifest gives for its PatientID, where there is a manifest)."""
        report = Report()
        patient_id = str(dataset.get("PatientID", "") or "")
        if self.manifest is not None:
            patient_id = self.manifest.require("its PatientID", patient_id).patient_id
        shift = self.pseudonyms.day_shift(patient_id) if self.shift_dates else None
        pseudonym = self.pseudonyms.patient(patient_id)
        identifying = IdentifyingValues.of(dataset)
        before = sum(1 for _ in _private_elements(dataset))
        dataset.remove_private_tags()
        report.private_removed = before
        self._walk(dataset, report, shift)
        if getattr(dataset, "file_meta", None) is not None:
            self._walk(dataset.file_meta, report, shift)
        report.cleaned = identifying.clean(dataset)
        dataset.PatientID = pseudonym
        dataset.PatientName = pseudonym
        dataset.PatientIdentityRemoved = "YES"
        dataset.DeidentificationMethod = f"DICOM PS3.15 Annex E Basic Profile ({PROFILE_EDITION})"
        dataset.DeidentificationMethodCodeSequence = Sequence(self._method_codes())
        return report

    def _method_codes(self) -> list[Dataset]:
        codes = [("113100", "Basic Application Confidentiality Profile")]
        if self.shift_dates:
            codes.append(
                ("113107", "Retain Longitudinal Temporal Information Modified Dates Option")
            )
        items = []
        for value, meaning in codes:
            item = Dataset()
            item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, "DCM", meaning
            items.append(item)
        return items

    def _walk(self, dataset: Dataset, report: Report, shift: timedelta | None) -> None:
        for element in list(dataset):
            tag = element.tag
            action = action_for(tag)
            if element.VR == "SQ" and action is None:
                for item in element.value:
                    self._walk(item, report, shift)
                continue
            if shift is not None and element.VR in DATE_VRS and action in (EMPTY, DUMMY, REMOVE):
                try:
                    if element.value:
                        element.value = _shift(str(element.value), element.VR, shift)
                        report.replaced.add(_name(tag))
                    continue
                except ValueError:
                    pass  # not a date that can be shifted: the profile's action instead
            if action == REMOVE:
                del dataset[tag]
                report.removed.add(_name(tag))
            elif action == EMPTY:
                element.value = Sequence() if element.VR == "SQ" else None
                report.emptied.add(_name(tag))
            elif action == DUMMY:
                element.value = Sequence() if element.VR == "SQ" else _dummy(element.VR)
                report.replaced.add(_name(tag))
            elif action == REMAP and element.value:
                values = element.value if element.VM > 1 else [element.value]
                remapped = [self.pseudonyms.uid(str(v)) for v in values]
                element.value = remapped if element.VM > 1 else remapped[0]
                report.remapped_uids += len(remapped)


def _dummy(vr: str):
    if vr in DUMMIES:
        return DUMMIES[vr]
    if vr in ("US", "SS", "UL", "SL", "FL", "FD", "UV", "SV"):
        return 0
    if vr in ("OB", "OW", "OF", "OD", "OL", "OV", "UN"):
        return b""
    return "ANONYMOUS"


def _private_elements(dataset: Dataset):
    for element in dataset.iterall():
        if element.tag.is_private:
            yield element


def has_burned_in_annotation(dataset: Dataset) -> str | None:
    """Why an instance may show identifying text in its pixels, or None."""
    flag = str(dataset.get("BurnedInAnnotation", "") or "").upper()
    if flag == "YES":
        return "it is marked as having burned-in annotation"
    secondary_capture = str(dataset.get("SOPClassUID", "")).startswith("1.2.840.10008.5.1.4.1.1.7")
    if secondary_capture and flag != "NO":
        return "it is a secondary capture not marked free of burned-in annotation"
    return None
