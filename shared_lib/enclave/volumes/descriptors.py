"""The patient's own identifying values, looked for in every text attribute that
de-identification keeps (PS3.15's "clean descriptors", applied to all of them): a sequence
name, a study description or an image comment may hold the patient's name, id, birth date or
accession number, typed by hand in any case or order. What matches is cut out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

# The value representations of free or short text that could carry a typed-in identifier.
TEXT_VRS = ("SH", "LO", "ST", "LT", "UT", "UC", "PN")
MIN_NAME_PART = 2  # letters; shorter parts of a name (an initial) match too much
MIN_IDENTIFIER = 3  # characters of an id or accession number


@dataclass(frozen=True)
class IdentifyingValues:
    """What identifies the patient in one instance, as patterns to cut out of text."""

    patterns: tuple[re.Pattern, ...]

    @classmethod
    def of(cls, dataset: Dataset) -> IdentifyingValues:
        """The name's parts (as words), the ids and accession number (anywhere in a word),
        and the birth date in the usual ways of writing it, from the original headers."""
        found: list[str] = []
        name = str(dataset.get("PatientName", "") or "")
        parts = {p for p in re.split(r"[\s^=,.]+", name) if len(p) >= MIN_NAME_PART}
        found += [
            rf"(?<![^\W_]){re.escape(part)}(?![^\W_])"  # a whole word; '_' separates words
            for part in sorted(parts, key=len, reverse=True)
        ]
        identifiers = [
            str(dataset.get(keyword, "") or "")
            for keyword in ("PatientID", "AccessionNumber", "OtherPatientIDs")
        ]
        found += [re.escape(i) for i in identifiers if len(i.strip()) >= MIN_IDENTIFIER]
        found += [re.escape(text) for text in _date_forms(dataset.get("PatientBirthDate"))]
        return cls(tuple(re.compile(p, re.IGNORECASE) for p in found))

    def clean(self, dataset: Dataset) -> set[str]:
        """Cut every match out of the text attributes left in `dataset`, at every depth; the
        names of the attributes changed."""
        cleaned: set[str] = set()
        if not self.patterns:
            return cleaned
        for element in dataset.iterall():
            if element.VR not in TEXT_VRS or element.value in (None, ""):
                continue
            values = list(element.value) if isinstance(element.value, MultiValue) else None
            before = [str(v) for v in values] if values is not None else [str(element.value)]
            after = [self.cut(text) for text in before]
            if after != before:
                element.value = after if values is not None else after[0]
                cleaned.add(element.keyword or str(element.tag))
        return cleaned

    def cut(self, text: str) -> str:
        """`text` without what identifies the patient."""
        for pattern in self.patterns:
            text = pattern.sub("", text)
        return re.sub(r"\s{2,}", " ", text).strip(" ^,;-_")


def _date_forms(value) -> list[str]:
    """A DICOM date (YYYYMMDD) as it may be typed: 19700131, 1970-01-31, 31/01/1970,
    01/31/1970, 31.01.1970."""
    try:
        day = date(int(str(value)[:4]), int(str(value)[4:6]), int(str(value)[6:8]))
    except (TypeError, ValueError):
        return []
    return sorted(
        {
            day.strftime("%Y%m%d"),
            day.strftime("%Y-%m-%d"),
            day.strftime("%d/%m/%Y"),
            day.strftime("%m/%d/%Y"),
            day.strftime("%d.%m.%Y"),
        }
    )
