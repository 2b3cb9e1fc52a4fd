"""`enclave dataset ingest omop`: a folder of OMOP CDM 5.4 tables (one file per table: CSV,
gzipped CSV or Parquet, the name in any case) checked against the specification,
de-identified (`deid`) and stored as Parquet (zstd), event tables ordered by person and date,
and those cohorts start from also by concept (`cdm.by_concept`).

Everything runs in DuckDB with a memory limit and a spill folder, so memory stays bounded
whatever the size of the source. A source is all or nothing: any problem (named with its file,
column and first bad row) leaves nothing of it registered.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import metadata
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from ..catalog import CatalogError, object_id_for
from ..pseudonyms import Pseudonymizer
from ..registration import FAILED, DatasetWriter, Outcome, first_line, memory_limit_bytes
from .cdm import CDM_VERSION, EVENTS, Column, by_concept, by_concept_columns, first_date, tables
from .deid import (
    id_space,
    keyed_integer,
    person_column,
    policy,
    renumbered,
    stored_expression,
)

SUFFIXES = (".csv.gz", ".csv", ".parquet")
STORE_SUFFIX = ".omop"
ROW = "__row"  # the source row number (from 1) that problems name
# Of the process's memory limit, what DuckDB's buffers may take: the rest is Python, Arrow and
# what DuckDB allocates outside its buffer manager.
DUCKDB_SHARE = 0.75
TOOLS = ("enclave", "duckdb", "pyarrow")


class SourceProblems(CatalogError):
    """What is wrong with a source, every problem on a line of its own."""


def table_files(source: Path) -> dict[str, Path]:
    """The CDM table each file of `source` holds, by its name; raises SourceProblems for a
    file that is not one, or two files of one table."""
    if not source.is_dir():
        raise CatalogError(f"{source}: not a folder of OMOP CDM tables")
    found: dict[str, Path] = {}
    problems = []
    for path in sorted(p for p in source.iterdir() if p.is_file()):
        lower = path.name.lower()
        suffix = next((s for s in SUFFIXES if lower.endswith(s)), None)
        table = lower.removesuffix(suffix) if suffix else None
        if table not in tables():
            problems.append(f"{path}: not a CDM {CDM_VERSION} table (CSV, .csv.gz or Parquet)")
        elif table in found:
            problems.append(f"{path}: a second file of table {table} (beside {found[table]})")
        else:
            found[table] = path
    if "person" not in found and not problems:
        problems.append(f"{source}: has no person table")
    if problems:
        raise SourceProblems("\n".join(problems))
    return found


def ingest_omop(
    source: Path,
    dataset_id: str,
    data_root: Path,
    key: bytes,
    object_id: str | None = None,
    show_progress: bool = True,
    report: Callable[[str], object] = print,
    memory_limit: str = "2GB",
) -> list[Outcome]:
    """Check, de-identify and register the CDM tables in `source` as one object, in at most
    about `memory_limit` of memory."""
    object_id = object_id or object_id_for(source.name)
    writer = DatasetWriter(data_root, dataset_id, kind="omop")
    try:
        files = table_files(source)
        if writer.has(object_id):
            raise CatalogError(f"dataset {dataset_id!r} already has {object_id!r}")
        with writer.staging(object_id) as staging:
            spill = staging / ".spill"
            store = staging / "tables"
            store.mkdir()
            spill.mkdir()
            settings = {"memory_limit": _duckdb_share(memory_limit), "temp_directory": str(spill)}
            with duckdb.connect(config=settings) as connection:
                counts = _convert(connection, files, store, key, show_progress)
                vocabulary = _vocabulary_version(connection, files)
            entry = {
                "kind": "omop",
                "format": "parquet",
                "cdm_version": CDM_VERSION,
                "vocabulary_version": vocabulary,
                "rows": counts,
                "source_files": {table: path.name for table, path in files.items()},
                "deidentification": policy(),
                "tools": {name: metadata.version(name) for name in TOOLS},
            }
            persons = pq.read_table(store / "person.parquet", columns=["person_source_value"])
            writer.register(
                object_id, store, object_id + STORE_SUFFIX, entry, persons.column(0).to_pylist()
            )
    except (CatalogError, duckdb.Error) as error:
        message = (
            str(error) if isinstance(error, CatalogError) else f"{source}: {first_line(error)}"
        )
        for line in message.splitlines():
            report(f"{FAILED}{line}")
        return [Outcome(source, error=message)]
    total = sum(counts.values())
    report(f"ok      {source} → {dataset_id}/{object_id} ({len(counts)} tables, {total} rows)")
    return [Outcome(source, object_id=object_id)]


def _convert(connection, files: dict[str, Path], store: Path, key: bytes, progress: bool) -> dict:
    """Check every table, then write every table; the rows written, by table."""
    problems = []
    for table, path in files.items():
        _read_source(connection, table, path)
        problems += _problems(connection, table, path)
    if not problems and "person" in files:
        problems += _unknown_persons(connection, files)
    if problems:
        raise SourceProblems("\n".join(problems))
    key_hex = _key_hex(key)
    _persons(connection, key, key_hex)
    _id_maps(connection, files, key_hex)
    counts = {}
    for table in tqdm(list(files), desc="tables", disable=not progress):
        counts[table] = _write(connection, table, store / f"{table}.parquet")
        if table in EVENTS:
            _write_by_concept(connection, table, store)
    return counts


def _read_source(connection, table: str, path: Path) -> None:
    """`source_<table>`: the file's rows, every column under its CDM name; and
    `numbered_<table>`, the same with each row's number, for naming the first bad one."""
    quoted = _literal(str(path))
    if path.name.lower().endswith(".parquet"):
        reader = f"read_parquet({quoted})"
    else:
        reader = f"read_csv({quoted}, all_varchar = true, header = true)"
    try:
        described = connection.execute(f"DESCRIBE SELECT * FROM {reader}").fetchall()
    except duckdb.Error as error:
        raise SourceProblems(f"{path}: cannot be read ({first_line(error)})") from None
    renamed = ", ".join(f"{_name(row[0])} AS {_name(row[0].lower())}" for row in described)
    connection.execute(
        f"CREATE OR REPLACE TEMP VIEW {_name('source_' + table)} AS SELECT {renamed} FROM {reader}"
    )
    connection.execute(
        f"CREATE OR REPLACE TEMP VIEW {_name('numbered_' + table)} AS "
        f"SELECT row_number() OVER () AS {ROW}, * FROM {_name('source_' + table)}"
    )


def _first_rows(connection, table: str, conditions: list[str], join: str = "") -> list:
    """For each condition on the rows of `table` (as `s`), the number of the first row that
    meets it, or None. Counted first without row numbers, which cost a pass in order; only
    a table with a problem is numbered."""
    counted = ", ".join(f"count(*) FILTER (WHERE {c})" for c in conditions)
    counts = connection.execute(
        f"SELECT {counted} FROM {_name('source_' + table)} s {join}"
    ).fetchone()
    if not any(counts):
        return [None] * len(conditions)
    first = ", ".join(f"min(s.{ROW}) FILTER (WHERE {c})" for c in conditions)
    return list(
        connection.execute(f"SELECT {first} FROM {_name('numbered_' + table)} s {join}").fetchone()
    )


def _problems(connection, table: str, path: Path) -> list[str]:
    """What is wrong with one table: columns missing or unknown, values of the wrong type or
    missing where required, a primary key taken twice."""
    present = _columns(connection, table)
    columns = {c.name: c for c in tables()[table]}
    problems = [
        f"{path}: column {name!r} is missing (CDM {CDM_VERSION} {table} requires it)"
        for name, column in columns.items()
        if column.required and name not in present
    ]
    problems += [
        f"{path}: column {name!r} is not in CDM {CDM_VERSION} table {table}"
        for name in sorted(present - set(columns))
    ]
    if problems:
        return problems
    checks, labels = [], []
    for name in (n for n in columns if n in present):
        column, value = columns[name], f"s.{_name(name)}"
        checks.append(f"{value} IS NOT NULL AND TRY_CAST({value} AS {column.stored_type}) IS NULL")
        labels.append((name, f"is not {_a(column)}"))
        if column.required:
            checks.append(f"{value} IS NULL")
            labels.append((name, "is empty (the column is required)"))
    try:
        found = _first_rows(connection, table, checks)
    except duckdb.Error as error:
        return [f"{path}: cannot be read ({first_line(error)})"]
    problems = [
        f"{path}: column {name!r}, row {row}: the value {what}"
        for (name, what), row in zip(labels, found, strict=True)
        if row is not None
    ]
    keys = [c for c in columns.values() if c.primary_key and c.name in present]
    if not problems and keys:
        (key,) = keys
        value = f"CAST({_name(key.name)} AS {key.stored_type})"
        twice = connection.execute(
            f"SELECT {value} AS id FROM {_name('source_' + table)} "
            "GROUP BY id HAVING count(*) > 1 LIMIT 1"
        ).fetchone()
        if twice:
            rows = connection.execute(
                f"SELECT min({ROW}), max({ROW}) FROM {_name('numbered_' + table)} "
                f"WHERE {value} = ?",
                [twice[0]],
            ).fetchone()
            problems.append(
                f"{path}: column {key.name!r}, rows {rows[0]} and {rows[1]}: the primary key "
                f"{twice[0]} is taken twice"
            )
    return problems


def _unknown_persons(connection, files: dict[str, Path]) -> list[str]:
    """Events whose person is not in the person table."""
    problems = []
    for table, path in files.items():
        column = person_column(table)
        if column is None or table == "person":
            continue
        person = f"CAST(s.{_name(column)} AS BIGINT)"
        join = (
            "LEFT JOIN (SELECT DISTINCT CAST(person_id AS BIGINT) AS id FROM source_person) p "
            f"ON p.id = {person}"
        )
        (row,) = _first_rows(connection, table, [f"{person} IS NOT NULL AND p.id IS NULL"], join)
        if row is not None:
            (who,) = connection.execute(
                f"SELECT {person} FROM {_name('numbered_' + table)} s WHERE {ROW} = ?", [row]
            ).fetchone()
            problems.append(
                f"{path}: column {column!r}, row {row}: person {who} is not in the person table"
            )
    return problems


def _persons(connection, key: bytes, key_hex: str) -> None:
    """`persons`: each source person's keyed id, pseudonym, day shift and shifted birth date.
    The pseudonym and shift come from the person's source value (what DICOM calls
    PatientID), or, where there is none, from the person id."""
    has = _columns(connection, "person")

    def part(name: str, kind: str) -> str:
        return f"TRY_CAST({name} AS {kind})" if name in has else f"CAST(NULL AS {kind})"

    birth = (
        f"coalesce(CAST({part('birth_datetime', 'TIMESTAMP')} AS DATE), "
        f"make_date({part('year_of_birth', 'BIGINT')}, {part('month_of_birth', 'BIGINT')}, "
        f"{part('day_of_birth', 'BIGINT')}))"
    )
    rows = connection.execute(
        f"SELECT CAST(person_id AS BIGINT), {part('person_source_value', 'VARCHAR')}, {birth} "
        "FROM source_person"
    ).fetchall()
    pseudonyms = Pseudonymizer(key)
    identity = [value if value else str(person) for person, value, _ in rows]
    shifts = [pseudonyms.day_shift(i).days for i in identity]
    table = pa.table(
        {
            "source_person_id": [r[0] for r in rows],
            "source_value": [r[1] or "" for r in rows],
            "pseudonym": [pseudonyms.patient(i) for i in identity],
            "shift_days": pa.array(shifts, pa.int32()),
            "birth_date": pa.array([r[2] for r in rows], pa.date32()),
        }
    )
    connection.register("persons_table", table)
    connection.execute(
        "CREATE OR REPLACE TEMP TABLE persons AS SELECT source_person_id, "
        f"{keyed_integer(key_hex, 'person', 'source_person_id')} AS person_id, source_value, "
        "pseudonym, shift_days, birth_date + shift_days AS birth_date FROM persons_table"
    )
    connection.unregister("persons_table")


def _id_maps(connection, files: dict[str, Path], key_hex: str) -> None:
    """`ids_<space>`: every source id of a keyed space (other than persons) that any table
    holds, with its keyed pseudonym, each hashed once however many rows name it."""
    holders: dict[str, list[str]] = {}  # by space, a query of each column's ids
    for table in files:
        present = _columns(connection, table)
        for column in tables()[table]:
            space = id_space(table, column)
            if renumbered(table, column) or column.name not in present:
                continue
            if space not in (None, "person"):
                holders.setdefault(space, []).append(
                    f"SELECT CAST({_name(column.name)} AS BIGINT) AS v "
                    f"FROM {_name('source_' + table)}"
                )
    for space, selects in holders.items():
        connection.execute(
            f"CREATE OR REPLACE TEMP TABLE {_name('ids_' + space)} AS SELECT v AS source_id, "
            f"{keyed_integer(key_hex, space, 'v')} AS id FROM "
            f"({' UNION '.join(selects)}) WHERE v IS NOT NULL"
        )


def _write(connection, table: str, target: Path) -> int:
    """Write one table, de-identified, to `target`; the number of rows."""
    source = _name("source_" + table)
    present = _columns(connection, table)
    person = person_column(table)
    joins = []
    if person is not None:
        joins.append(
            f"LEFT JOIN persons p ON p.source_person_id = CAST(s.{_name(person)} AS BIGINT)"
        )

    def keyed(space: str, value: str) -> str:
        """An id's pseudonym from its space's map (a table's person comes with `p`)."""
        alias = f"k{len(joins)}"
        mapping = _name("ids_" + space)
        joins.append(f"LEFT JOIN {mapping} {alias} ON {alias}.source_id = CAST({value} AS BIGINT)")
        return f"{alias}.id"

    def stored(column: Column) -> str:
        # A column the source lacks stays empty; but for the person table's birth parts and
        # pseudonym, which come from its other columns.
        derived = table == "person" and id_space(table, column) is None
        if column.name not in present and not derived:
            return f"CAST(NULL AS {column.stored_type})"
        return stored_expression(table, column, _typed(column, present), keyed)

    selected = ", ".join(f"{stored(c)} AS {_name(c.name)}" for c in tables()[table])
    order = [name for name in (person, first_date(table)) if name]
    ordering = f" ORDER BY {', '.join(_name(n) for n in order)}" if order else ""
    copied = connection.execute(
        f"COPY (SELECT {selected} FROM {source} s {' '.join(joins)}{ordering}) "
        f"TO {_literal(str(target))} (FORMAT parquet, COMPRESSION zstd)"
    ).fetchone()
    return int(copied[0])


def _write_by_concept(connection, table: str, store: Path) -> None:
    """The stored event table's copy ordered by concept, person and date (`cdm.by_concept`)."""
    columns = by_concept_columns(table)
    written = _literal(str(store / f"{table}.parquet"))
    target = _literal(str(store / f"{by_concept(table)}.parquet"))
    connection.execute(
        f"COPY (SELECT {', '.join(columns)} FROM read_parquet({written}) "
        f"ORDER BY {', '.join(columns[:3])}) TO {target} (FORMAT parquet, COMPRESSION zstd)"
    )


def _columns(connection, table: str) -> set[str]:
    """The CDM columns the source of `table` has."""
    described = connection.execute(f"DESCRIBE {_name('source_' + table)}").fetchall()
    return {row[0] for row in described}


def _typed(column: Column, present: set[str]) -> str:
    """The column's source value in its stored type (NULL where the source lacks it)."""
    if column.name not in present:
        return f"CAST(NULL AS {column.stored_type})"
    return f"CAST(s.{_name(column.name)} AS {column.stored_type})"


def _vocabulary_version(connection, files: dict[str, Path]) -> str | None:
    """The vocabulary release: cdm_source's, else the vocabulary table's own row."""
    for table, query in (
        ("cdm_source", "SELECT any_value(vocabulary_version) FROM source_cdm_source"),
        (
            "vocabulary",
            "SELECT any_value(vocabulary_version) FROM source_vocabulary "
            "WHERE vocabulary_id = 'None'",
        ),
    ):
        if table in files:
            found = connection.execute(query).fetchone()[0]
            if found:
                return str(found)
    return None


def _duckdb_share(memory_limit: str) -> str:
    """DuckDB's part of the ingest's memory limit ('4GB', '512MiB'), in its own terms."""
    return f"{max(int(memory_limit_bytes(memory_limit) * DUCKDB_SHARE) >> 20, 64)}MiB"


def _key_hex(key: bytes) -> str:
    """The secret that goes into the hashing SQL: derived, so the key itself never does."""
    return Pseudonymizer(key).derived_secret("omop-ids")


def _a(column: Column) -> str:
    return {
        "integer": "an integer",
        "float": "a number",
        "date": "a date",
        "datetime": "a date and time",
        "text": "text",
    }[column.type]


def _name(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
