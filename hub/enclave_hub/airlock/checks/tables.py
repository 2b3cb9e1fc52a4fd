"""Statistical disclosure control of tables (CSV, TSV, Parquet, Excel).

- Cells are the values of count columns: columns named as counts (`n`, `count`, `freq`,
  `n_...`, `..._count`), or, where none is named, every numeric column when all of them hold
  whole numbers (a frequency table, such as a cross-tabulation). A cell between 1 and
  `min_cell_count - 1` fails; a zero is flagged (it can tell that no one in a group has a
  trait); text in a count column (`<10`, `*`) is taken as suppressed.
- Magnitude cells (sums, means) are checked with their contributors, given in a supporting
  file `<table>.contributors.<csv|tsv|parquet|xlsx>` sent with the request and never released:
  one row per cell with `total`, `top1`, `top2` (the two largest contributions) and, if given,
  `n` (the contributors). Dominance fails a cell when `top1 + top2 >= dominance_share * total`;
  the p-ratio rule when `total - top1 - top2 < p_ratio * top1`. Without that file, magnitude
  columns are flagged for a checker.
- Columns named as direct identifiers (patient ids, names, dates of birth, postcodes...) fail;
  a table longer than `max_table_rows` is flagged as possibly row-level data.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from . import Finding, Rules
from .kinds import suffix

CONTRIBUTORS = ".contributors"
COUNT_NAME = re.compile(
    r"^(n|count|counts|freq|frequency|frequencies|number|num)$"
    r"|^(n|count|num|number)_|_(n|count|counts|freq)$",
    re.IGNORECASE,
)
IDENTIFIER_NAME = re.compile(
    r"^(patient|person|subject|participant|pseudo|record)?[_ ]?(id|identifier)$|nhs|\bmrn\b"
    r"|ssn|social_security|date_of_birth|^dob$|birth_?date|post_?code|zip_?code|^name$"
    r"|full_?name|first_?name|last_?name|surname|address|e_?mail|phone",
    re.IGNORECASE,
)
SHOWN = 3  # cells named in a finding; the rest are counted
SEPARATORS = {".csv": ",", ".tsv": "\t"}
CHUNK_ROWS = 100_000


class Unreadable(ValueError):
    """The file cannot be read as a table; the message says why."""


@contextmanager
def _parsing():
    """The parsers raise many kinds of errors; all mean "not a table"."""
    try:
        yield
    except Exception as error:
        raise Unreadable(f"{type(error).__name__}: {error}") from None


def read_tables(name: str, path: Path) -> list[tuple[str, object]]:
    """(where, DataFrame) for each table in the file: one (where is ''), or one per Excel sheet
    (where is "sheet 'name': ", which prefixes its findings)."""
    import pandas as pd

    ending = suffix(name)
    with _parsing():
        if ending in SEPARATORS:
            return [("", pd.read_csv(path, sep=SEPARATORS[ending]))]
        if ending == ".parquet":
            return [("", pd.read_parquet(path))]
        if ending == ".xlsx":
            sheets = pd.read_excel(path, sheet_name=None, engine="openpyxl")
            return [(f"sheet '{sheet}': ", frame) for sheet, frame in sheets.items()]
    raise Unreadable(f"{ending or 'no suffix'} is not a table format")


def table_columns(name: str, path: Path) -> list[str] | None:
    """The column names of a CSV, TSV or Parquet table, read without its rows; None for others."""
    import pandas as pd
    import pyarrow.parquet as pq

    ending = suffix(name)
    with _parsing():
        if ending in SEPARATORS:
            return [str(c) for c in pd.read_csv(path, sep=SEPARATORS[ending], nrows=0).columns]
        if ending == ".parquet":
            return pq.read_schema(path).names
    return None


def table_chunks(name: str, path: Path, columns: list[str]) -> Iterator:
    """Some columns of a CSV, TSV or Parquet table as DataFrames of up to `CHUNK_ROWS` rows, so
    that a table of any length is read in bounded memory."""
    import pandas as pd
    import pyarrow.parquet as pq

    ending = suffix(name)
    with _parsing():
        if ending == ".parquet":
            with pq.ParquetFile(path) as table:
                for batch in table.iter_batches(CHUNK_ROWS, columns=columns, use_threads=False):
                    yield batch.to_pandas()
        else:
            sep = SEPARATORS[ending]
            with pd.read_csv(path, sep=sep, usecols=columns, chunksize=CHUNK_ROWS) as reader:
                yield from reader


def contributors_of(name: str) -> str:
    """The stem a supporting contributors file is matched by: `a/b.csv` -> `a/b`."""
    return name[: -len(suffix(name))] if suffix(name) else name


def is_contributors_file(name: str) -> bool:
    return contributors_of(name).endswith(CONTRIBUTORS)


def _row_label(frame, index: int) -> str:
    """A row named by its first text column's value where there is one, else its number."""
    for column in frame.columns:
        if frame[column].dtype == object:
            return f"{column}={frame[column].iloc[index]!s}"
    return f"row {index + 1}"


def _cells(frame, column: str, positions) -> str:
    shown = [f"{_row_label(frame, i)} {column}={frame[column].iloc[i]}" for i in positions[:SHOWN]]
    more = f" and {len(positions) - SHOWN} more" if len(positions) > SHOWN else ""
    return "; ".join(shown) + more


def _numeric_columns(frame) -> list[str]:
    from pandas.api.types import is_bool_dtype, is_numeric_dtype

    return [c for c in frame.columns if is_numeric_dtype(frame[c]) and not is_bool_dtype(frame[c])]


def _whole(values) -> bool:
    present = values.dropna()
    return bool(((present >= 0) & (present == present.round())).all())


def count_columns(frame) -> tuple[list[str], list[str]]:
    """(count columns, magnitude columns) of a table."""
    import pandas as pd

    numeric = _numeric_columns(frame)
    named = [c for c in frame.columns if COUNT_NAME.search(str(c))]
    if named:
        return named, [c for c in numeric if c not in named]
    if numeric and all(_whole(pd.to_numeric(frame[c], errors="coerce")) for c in numeric):
        return numeric, []
    return [], numeric


def check_counts(frame, column: str, rules: Rules, where: str = "") -> list[Finding]:
    import pandas as pd

    values = pd.to_numeric(frame[column], errors="coerce").reset_index(drop=True)
    findings = []
    wrong = values.index[values.notna() & ((values < 0) | (values != values.round()))].tolist()
    if wrong:
        findings.append(
            Finding(
                "cell-count",
                "fail",
                f"{where}column '{column}' is named as counts but holds other values: "
                + _cells(frame, column, wrong),
            )
        )
    small = values.index[(values > 0) & (values < rules.min_cell_count)].tolist()
    if small:
        findings.append(
            Finding(
                "minimum-cell-count",
                "fail",
                f"{where}{len(small)} cell(s) below the minimum of {rules.min_cell_count}: "
                + _cells(frame, column, small),
            )
        )
    zeros = values.index[values == 0].tolist()
    if zeros:
        findings.append(
            Finding(
                "zero-cell",
                "flag",
                f"{where}{len(zeros)} zero cell(s), which can disclose that no one in a group "
                "has a trait: " + _cells(frame, column, zeros),
            )
        )
    return findings


def check_contributors(frame, rules: Rules, where: str = "") -> list[Finding]:
    """Dominance and p-ratio for each magnitude cell described in a contributors table."""
    import pandas as pd

    columns = {str(c).lower(): c for c in frame.columns}
    missing = [c for c in ("total", "top1") if c not in columns]
    if missing:
        return [
            Finding(
                "contributors",
                "fail",
                f"{where}its contributors file lacks the column(s) {', '.join(missing)} "
                "(it needs total, top1, top2)",
            )
        ]

    def column(key: str):
        if key not in columns:
            return pd.Series(0.0, index=frame.index)
        return pd.to_numeric(frame[columns[key]], errors="coerce").fillna(0.0)

    total, top1, top2 = column("total"), column("top1"), column("top2")
    frame = frame.reset_index(drop=True)
    dominated = frame.index[(total > 0) & (top1 + top2 >= rules.dominance_share * total)]
    estimable = frame.index[(total > 0) & (total - top1 - top2 < rules.p_ratio * top1)]
    findings = []
    share = f"{rules.dominance_share:.0%}"
    if len(dominated):
        findings.append(
            Finding(
                "dominance",
                "fail",
                f"{where}{len(dominated)} cell(s) where the two largest contributors hold "
                f"{share} or more of the total: "
                + _cells(frame, columns["total"], dominated.tolist()),
            )
        )
    if len(estimable):
        findings.append(
            Finding(
                "p-ratio",
                "fail",
                f"{where}{len(estimable)} cell(s) where the second contributor could estimate the "
                f"largest within {rules.p_ratio:.0%}: "
                + _cells(frame, columns["total"], estimable.tolist()),
            )
        )
    if "n" in columns:
        findings += check_counts(frame, columns["n"], rules, where)
    passed = f"{where}{len(frame)} magnitude cell(s) pass dominance and p-ratio"
    return findings or [Finding("dominance", "pass", passed)]


def check_identifiers(columns: Iterable, where: str = "") -> list[Finding]:
    """A failure naming the columns named like direct identifiers, if any."""
    identifiers = [str(c) for c in columns if IDENTIFIER_NAME.search(str(c))]
    if not identifiers:
        return []
    message = f"{where}column(s) {', '.join(identifiers)} look like direct identifiers"
    return [Finding("identifiers", "fail", message)]


def check_table(frame, rules: Rules, contributors=None, where: str = "") -> list[Finding]:
    """The disclosure findings for one table (and its contributors table, if given); `where`
    prefixes each message (the sheet of a workbook)."""
    findings = check_identifiers(frame.columns, where)
    if len(frame) > rules.max_table_rows:
        findings.append(
            Finding(
                "row-level",
                "flag",
                f"{where}{len(frame)} rows (more than {rules.max_table_rows}): is it row-level "
                "data rather than a summary?",
            )
        )
    counts, magnitudes = count_columns(frame)
    for column in counts:
        findings += check_counts(frame, column, rules, where)
    if contributors is not None:
        findings += check_contributors(contributors, rules, where)
    elif magnitudes:
        names = ", ".join(str(c) for c in magnitudes)
        findings.append(
            Finding(
                "magnitudes",
                "flag",
                f"{where}column(s) {names} are not counts; without a contributors file "
                "their dominance and p-ratio were not checked",
            )
        )
    if not counts and not magnitudes:
        findings.append(Finding("cells", "flag", f"{where}no numeric cells to check"))
    if not any(f.outcome != "pass" for f in findings):
        cells = sum(frame[c].notna().sum() for c in counts)
        findings.append(
            Finding("minimum-cell-count", "pass", f"{where}{cells} cell(s) of counts pass")
        )
    return findings
