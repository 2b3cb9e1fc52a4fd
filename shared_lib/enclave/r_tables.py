"""Tables for the R kernel, which has no Parquet reader (Debian ships none for R): DuckDB runs a
query over a project's OMOP data, or reads a Parquet or CSV file, and writes the result as CSV
with each column's R class, which `enclave_query()` and `enclave_table()` in R read with
data.table's fread. No value is changed on the way: NULL is written as `\\N` and read as NA,
BIGINT becomes R's double (exact to 2^53; R's integers have 32 bits)."""

from __future__ import annotations

import os
from pathlib import Path

import duckdb

from .omop.reading import _escaped, open_omop

NULL_MARK = "\\N"
R_CLASSES = {
    "BOOLEAN": "logical",
    "TINYINT": "integer",
    "SMALLINT": "integer",
    "INTEGER": "integer",
    "UTINYINT": "integer",
    "USMALLINT": "integer",
    "FLOAT": "double",
    "DOUBLE": "double",
    "BIGINT": "double",
    "UINTEGER": "double",
    "UBIGINT": "double",
    "HUGEINT": "double",
    "DATE": "Date",
}


def r_class(duckdb_type: str) -> str:
    """The R class a column of `duckdb_type` is read as; text for every other type."""
    if duckdb_type.startswith("DECIMAL"):
        return "double"
    if duckdb_type.startswith("TIMESTAMP"):  # _S, _MS, _NS, WITH TIME ZONE: read in UTC
        return "POSIXct"
    return R_CLASSES.get(duckdb_type, "character")


def table_for_r(
    out: str | os.PathLike,
    query: str | None = None,
    omop: str | None = None,
    path: str | os.PathLike | None = None,
) -> dict[str, str]:
    """Write `query` (over the OMOP tables of `omop` if given) or the file at `path` to the
    CSV `out`; the R class of each column, in order."""
    if (query is None) == (path is None):
        raise ValueError("give a query or a file's path")
    if path is not None:
        if not Path(path).is_file():
            raise FileNotFoundError(f"{path}: no such file")
        query = f"SELECT * FROM '{_escaped(Path(path))}'"
    connection = open_omop(omop) if omop else duckdb.connect()
    with connection:
        result = connection.sql(query)
        classes = {
            name: r_class(str(kind))
            for name, kind in zip(result.columns, result.types, strict=True)
        }
        result.write_csv(
            str(out),
            header=True,
            na_rep=NULL_MARK,
            date_format="%Y-%m-%d",
            timestamp_format="%Y-%m-%dT%H:%M:%S.%fZ",
        )
    return classes
