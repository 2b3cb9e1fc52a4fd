"""The checks of one request's files: each file by its kind, tables with their contributors."""

from __future__ import annotations

from pathlib import Path

from . import FileReport, Finding, Rules, genetics
from .archives import check_archive
from .kinds import HEAD_BYTES, classify, suffix
from .notebooks import check_notebook
from .person_ids import check_file_bytes, check_table_cells
from .sumstats import check_sumstats, layout_of
from .tables import (
    Unreadable,
    check_table,
    contributors_of,
    is_contributors_file,
    read_tables,
    table_chunks,
    table_columns,
)

OUTPUT, SUPPORTING = "output", "supporting"
COMPRESSED_TABLES = {".parquet", ".xlsx"}
REFUSED = {
    "dicom": "DICOM files are refused: images of patients leave only as checked results",
    "slide": "whole-slide images are refused: slides leave only as checked results",
    "data": "data files (matrices, row-level tables, array stores, genomes) are refused: data "
    "leaves only as checked results",
    "compressed": "compressed files cannot be checked: send the file itself, or a zip",
    **genetics.REFUSED,
}
FLAGGED = {
    "image": "an image: a checker must look at it (it may show small counts or a person)",
    "document": "a document may hold tables or images: a checker must read it",
    "text": "text output: a checker must read it",
}


def _tiff(path: Path) -> list[Finding]:
    """A small single image is an image; pyramids and many-page files are slides."""
    try:
        import tifffile

        with tifffile.TiffFile(path) as tiff:
            pages = len(tiff.pages)
            levels = max((len(series.levels) for series in tiff.series), default=1)
            vendor = any(getattr(tiff, f"is_{v}", False) for v in ("svs", "ndpi", "scn", "bif"))
    except Exception as error:  # tifffile raises many kinds for a file it cannot read
        return [Finding("file-type", "fail", f"a TIFF that cannot be read ({error})")]
    if vendor or pages > 1 or levels > 1:
        return [Finding("file-type", "fail", REFUSED["slide"] + f" ({pages} pages)")]
    return [Finding("file-type", "flag", FLAGGED["image"])]


def _unknown(path: Path) -> list[Finding]:
    with path.open("rb") as source:
        sample = source.read(65536)
    try:
        sample.decode("utf-8")
    except UnicodeDecodeError:
        return [Finding("file-type", "fail", "an unrecognised binary file cannot be checked")]
    return [Finding("file-type", "flag", FLAGGED["text"])]


def _by_kind(kind: str, name: str, path: Path, rules: Rules, contributors) -> list[Finding]:
    if kind in REFUSED:
        return [Finding("file-type", "fail", REFUSED[kind])]
    if kind in FLAGGED:
        return [Finding("file-type", "flag", FLAGGED[kind])]
    if kind == "tiff":
        return _tiff(path)
    if kind == "unknown":
        return _unknown(path)
    if kind == "code":
        return [Finding("file-type", "pass", "code")]
    if kind == "empty":
        return [Finding("file-type", "pass", "an empty file")]
    if kind == "notebook":
        return check_notebook(path)
    if kind == "archive":
        return check_archive(
            name, path, rules, lambda member, at: check_file(member, at, rules, OUTPUT)
        )
    try:
        return _tables(name, path, rules, contributors)
    except Unreadable as error:
        return [Finding("table", "fail", f"cannot be read as a table ({error})")]


def _tables(name: str, path: Path, rules: Rules, contributors) -> list[Finding]:
    """GWAS summary statistics by their own rules, read in chunks; other tables whole."""
    columns = table_columns(name, path)
    layout = layout_of(columns) if columns is not None else None
    if layout is not None:
        return check_sumstats(columns, table_chunks(name, path, layout.columns), layout, rules)
    tables = read_tables(name, path)
    findings = []
    for where, frame in tables:
        findings += check_table(frame, rules, contributors, where)
        if suffix(name) in COMPRESSED_TABLES:  # the search of the bytes cannot see into them
            findings += check_table_cells(frame, where)
    return findings


def check_file(name: str, path: Path, rules: Rules, role: str, contributors=None) -> FileReport:
    """The findings for one file. Supporting files are checked for their type only: they go
    to the checkers, never out."""
    size = path.stat().st_size
    with path.open("rb") as source:
        kind = classify(name, source.read(HEAD_BYTES))
    report = FileReport(name, kind)
    if size > rules.max_file_size:
        report.findings.append(
            Finding("size", "fail", f"{size} bytes: more than the limit of {rules.max_file_size}")
        )
        return report
    if role == SUPPORTING:
        if kind in REFUSED:
            report.findings.append(Finding("file-type", "fail", REFUSED[kind]))
        else:
            report.findings.append(
                Finding("supporting", "pass", "for the checkers only; it is never released")
            )
        return report
    report.findings += check_file_bytes(path) + _by_kind(kind, name, path, rules, contributors)
    return report


def check_files(files: list[tuple[str, Path, str]], rules: Rules) -> list[FileReport]:
    """Check a request's files (name, path, role); each output table is checked with the
    supporting `<table>.contributors.<ext>` file sent beside it, if any."""
    contributor_files = {
        contributors_of(name).removesuffix(".contributors"): (name, path)
        for name, path, role in files
        if role == SUPPORTING and is_contributors_file(name)
    }
    reports = []
    for name, path, role in files:
        contributors = None
        companion = contributor_files.get(contributors_of(name))
        if role == OUTPUT and companion is not None:
            try:
                frames = read_tables(*companion)
                contributors = frames[0][1] if frames else None
            except Unreadable as error:
                report = FileReport(name, "table")
                report.findings.append(
                    Finding("contributors", "fail", f"its contributors file: {error}")
                )
                reports.append(report)
                continue
        reports.append(check_file(name, path, rules, role, contributors))
    return reports
