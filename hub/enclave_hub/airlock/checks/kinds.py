"""What a file is, from its name and its first bytes (the bytes win where they are certain)."""

from __future__ import annotations

import zlib
from pathlib import PurePosixPath

from .genetics import genotype_format

HEAD_BYTES = 64 * 1024  # a BGZF block at most: what is looked into inside gzip

TABLES = {".csv", ".tsv", ".parquet", ".xlsx"}
ARCHIVES = {".zip", ".tar", ".tgz", ".tar.gz", ".tar.bz2", ".tar.xz"}
SLIDES = {".svs", ".ndpi", ".scn", ".mrxs", ".vms", ".vmu", ".bif", ".czi", ".isyntax", ".qptiff"}
IMAGES = {".png", ".jpg", ".jpeg", ".gif", ".svg", ".bmp", ".webp", ".eps"}
DOCUMENTS = {".pdf", ".docx", ".pptx", ".odt", ".odp", ".html", ".htm"}
CODE = {".py", ".r", ".jl", ".sh", ".sql", ".m", ".do", ".sas", ".js", ".ts", ".nf", ".smk"}
TEXT = {".txt", ".md", ".rst", ".tex", ".bib", ".json", ".yaml", ".yml", ".toml", ".log", ".cfg"}
# Whole data, not results: row-level tables, matrices, images of patients, genomes.
DATA = {
    ".h5ad", ".h5", ".hdf5", ".loom", ".npy", ".npz", ".pkl", ".pickle", ".joblib",
    ".feather", ".arrow", ".sqlite", ".db", ".rds", ".rdata", ".rda", ".sav", ".dta",
    ".sas7bdat", ".nii", ".nii.gz", ".nrrd", ".mha", ".mhd", ".zarr", ".vcf", ".vcf.gz",
    ".bam", ".cram", ".fastq", ".fq", ".xls",
}  # fmt: skip
DICOM = {".dcm", ".dicom"}
TIFF = {".tif", ".tiff"}

ZIP_MAGIC = b"PK\x03\x04"
GZIP_MAGIC = b"\x1f\x8b"
TIFF_MAGICS = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


def suffix(name: str) -> str:
    """The file's type suffix, lower-case, counting the double ones (`.tar.gz`, `.nii.gz`)."""
    suffixes = [s.lower() for s in PurePosixPath(name).suffixes]
    double = "".join(suffixes[-2:])
    if double in ARCHIVES | DATA:
        return double
    return suffixes[-1] if suffixes else ""


def is_dicom(head: bytes) -> bool:
    return head[128:132] == b"DICM"


def _gunzipped(head: bytes) -> bytes:
    """The first bytes a gzip file holds (in its first member: a BGZF file's first block)."""
    try:
        return zlib.decompressobj(wbits=16 + zlib.MAX_WBITS).decompress(head, HEAD_BYTES)
    except zlib.error:
        return b""


def classify(name: str, head: bytes) -> str:
    """One of table, notebook, archive, dicom, a genotype format (`genetics.FORMATS`), slide,
    tiff, image, document, code, text, data, compressed, empty or unknown."""
    if not head:
        return "empty"
    if is_dicom(head):
        return "dicom"
    genotypes = genotype_format(_gunzipped(head) if head.startswith(GZIP_MAGIC) else head)
    if genotypes is not None:
        return genotypes
    ending = suffix(name)
    by_name = {
        **dict.fromkeys(TABLES, "table"),
        ".ipynb": "notebook",
        **dict.fromkeys(ARCHIVES, "archive"),
        **dict.fromkeys(DICOM, "dicom"),
        **dict.fromkeys(SLIDES, "slide"),
        **dict.fromkeys(TIFF, "tiff"),
        **dict.fromkeys(IMAGES, "image"),
        **dict.fromkeys(DOCUMENTS, "document"),
        **dict.fromkeys(CODE, "code"),
        **dict.fromkeys(TEXT, "text"),
        **dict.fromkeys(DATA, "data"),
    }.get(ending)
    if by_name is not None:
        return by_name
    if head.startswith(TIFF_MAGICS):
        return "tiff"
    if head.startswith(ZIP_MAGIC):
        return "archive"
    if head.startswith(GZIP_MAGIC) or ending in {".gz", ".bz2", ".xz", ".zst", ".7z", ".rar"}:
        return "compressed"
    if len(head) > 262 and head[257:262] == b"ustar":
        return "archive"
    return "unknown"
