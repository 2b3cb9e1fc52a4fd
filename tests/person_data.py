"""The real sample data the person tests link: an MR series, Synthea's OMOP persons and the
VCF specification's samples, in ../shared/data, and manifests that tie them to one patient."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
MR_SERIES = SHARED / "dicom" / "dicom2nifti" / "generic" / "anatomical" / "001"
SYNTHEA = SHARED / "omop" / "synthea27nj-5.4-parquet"
VCF = SHARED / "genotypes" / "sample.vcf.gz"
# Synthea's first person (their source value), whom the MR series and sample NA00001 belong to.
PATIENT = "1007c05b-8d20-8fe6-6790-44622f8316df"


def require_person_data() -> None:
    for needed in (MR_SERIES, SYNTHEA, VCF):
        if not needed.exists():
            pytest.skip(f"{needed} is absent: the shared sample data sits beside the checkout")


def quiet(_line: str) -> None:
    """An ingest's report, not needed here."""


def write_manifest(path: Path, rows: list[tuple[str, ...]], header="source,patient_id") -> Path:
    path.write_text(header + "\n" + "".join(",".join(row) + "\n" for row in rows))
    return path
