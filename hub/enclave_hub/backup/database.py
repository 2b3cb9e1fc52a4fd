"""The deployment's databases in a backup.

The registry's database (SQLite or PostgreSQL, shared by the registry and the airlock) is
dumped row by row, table by table, from one read transaction: on PostgreSQL a repeatable-read
snapshot; on SQLite a snapshot taken first with SQLite's online backup, so that a running
deployment's writes neither wait nor tear it. The dump is JSON lines: for each table a line
naming it and its columns, then a line per row. A restore creates the tables from their
definitions (`core/registry_tables.py`, `airlock/models.py`), exactly as the services would,
and inserts the rows in one transaction into whichever database it is given: a backup of
SQLite may become PostgreSQL, and back.

The hub's own database is SQLite; it is copied whole with the online backup.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import sqlite3
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path

from sqlalchemy import (
    JSON,
    Connection,
    Date,
    DateTime,
    Integer,
    LargeBinary,
    MetaData,
    Table,
    bindparam,
    create_engine,
    func,
    insert,
    inspect,
    select,
    text,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from ..airlock import models as airlock_tables
from ..core import registry_tables
from ..core.registry import aware, open_engine
from . import BackupError

BATCH = 500


def known_tables() -> list[Table]:
    """Every table of the deployment's database, each after those it refers to."""
    metadatas: list[MetaData] = [registry_tables.Base.metadata, airlock_tables.Base.metadata]
    return [table for metadata in metadatas for table in metadata.sorted_tables]


def shown(url: str) -> str:
    """A database URL as it may be printed: without its password."""
    return make_url(url).render_as_string(hide_password=True)


def copy_sqlite(source: Path, target: Path) -> None:
    """A consistent copy of a live SQLite database, by its online backup (WAL included)."""
    os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    try:
        given = sqlite3.connect(f"{source.absolute().as_uri()}?mode=ro", uri=True, timeout=30)
        try:
            copy = sqlite3.connect(target)
            try:
                given.backup(copy)
            finally:
                copy.close()
        finally:
            given.close()
    except sqlite3.Error as error:
        raise BackupError(f"{source}: cannot copy the SQLite database: {error}") from None


# -- values as JSON ---------------------------------------------------------------------------


def _encode(table: Table, row) -> list:
    values = []
    for column, value in zip(table.columns, row, strict=True):
        kind = column.type
        if value is None:
            values.append(None)
        elif isinstance(kind, DateTime | Date):
            values.append(value.isoformat())
        elif isinstance(kind, LargeBinary):
            values.append(base64.b64encode(value).decode())
        else:
            values.append(value)
    return values


def _decode(table: Table, names: list[str], values: list) -> dict:
    row = {}
    for name, value in zip(names, values, strict=True):
        kind = table.columns[name].type
        if value is None:
            row[name] = None
        elif isinstance(kind, DateTime):
            moment = datetime.fromisoformat(value)
            row[name] = aware(moment) if kind.timezone else moment
        elif isinstance(kind, Date):
            row[name] = date.fromisoformat(value)
        elif isinstance(kind, LargeBinary):
            row[name] = base64.b64decode(value)
        else:
            row[name] = value
    return row


# -- dumping ----------------------------------------------------------------------------------


@contextlib.contextmanager
def _snapshot(url: str, work: Path) -> Iterator[Connection]:
    """A connection reading one unchanging state of the database at `url`."""
    engine = open_engine(url)
    if engine.dialect.name == "sqlite":
        database = engine.url.database
        engine.dispose()
        if not database or not Path(database).is_file():
            raise BackupError(f"registry.database_url: no SQLite database at {database}")
        copy = work / "registry-snapshot.sqlite"
        copy_sqlite(Path(database), copy)
        engine = create_engine(f"sqlite:///{copy}")
        try:
            with engine.connect() as connection:
                yield connection
        finally:
            engine.dispose()
            copy.unlink()
        return
    try:
        with engine.connect() as connection:
            connection.execution_options(
                isolation_level="REPEATABLE READ", postgresql_readonly=True
            )
            with connection.begin():
                yield connection
    finally:
        engine.dispose()


def dump_registry(url: str, target: Path, work: Path) -> tuple[dict[str, int], list[dict]]:
    """Write the database at `url` to `target`: the rows of each table, and the released
    airlock requests (id, requester) whose outboxes belong in the backup."""
    counts: dict[str, int] = {}
    released: list[dict] = []
    requests = airlock_tables.ExportRequest.__table__
    try:
        descriptor = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with open(descriptor, "w") as out, _snapshot(url, work) as connection:
            present = set(inspect(connection).get_table_names())
            tables = known_tables()
            unknown = sorted(present - {table.name for table in tables})
            if unknown:
                raise BackupError(
                    f"the database {shown(url)} holds tables this version of Enclave does not "
                    f"know ({', '.join(unknown)}); nothing was backed up"
                )
            for table in (t for t in tables if t.name in present):
                out.write(json.dumps({"table": table.name, "columns": list(table.columns.keys())}))
                out.write("\n")
                rows = connection.execute(
                    select(table).order_by(*table.primary_key.columns),
                    execution_options={"stream_results": True},
                )
                counts[table.name] = 0
                for row in rows:
                    out.write(json.dumps(_encode(table, row), ensure_ascii=False) + "\n")
                    counts[table.name] += 1
                    if table is requests and row.status == airlock_tables.RELEASED:
                        released.append({"id": row.id, "requester": row.requester})
            out.flush()
            os.fsync(out.fileno())
    except SQLAlchemyError as error:
        raise BackupError(f"cannot read the database {shown(url)}: {error}") from None
    return counts, released


# -- restoring --------------------------------------------------------------------------------


def _dumped(source: Path) -> Iterator[tuple[Table, list[str], list[list]]]:
    """The dump's tables, each with its columns and its rows in batches."""
    tables = {table.name: table for table in known_tables()}
    table, names, batch = None, [], []
    with source.open() as given:
        for number, line in enumerate(given, start=1):
            item = json.loads(line)
            if isinstance(item, dict):
                if table is not None and batch:
                    yield table, names, batch
                table, names, batch = tables.get(item.get("table")), item.get("columns"), []
                if table is None:
                    raise BackupError(f"{source}: line {number}: no table {item.get('table')!r}")
                unknown = sorted(set(names) - set(table.columns.keys()))
                if unknown:
                    raise BackupError(
                        f"{source}: line {number}: table {table.name} has no column {unknown[0]}"
                    )
            elif table is None or not isinstance(item, list) or len(item) != len(names):
                raise BackupError(f"{source}: line {number} is not a row of its table")
            else:
                batch.append(item)
                if len(batch) == BATCH:
                    yield table, names, batch
                    batch = []
    if table is not None and batch:
        yield table, names, batch


def _insert(table: Table, names: list[str]):
    """An insert of `names` into `table` in which a JSON column's None is SQL NULL, as it was
    for a row that never set it (the JSON type would otherwise write the JSON `null`)."""
    values = {
        name: bindparam(f"json_{name}", type_=JSON(none_as_null=True))
        for name in names
        if isinstance(table.columns[name].type, JSON)
    }
    return insert(table).values(values) if values else insert(table)


def _parameters(table: Table, names: list[str], values: list) -> dict:
    row = _decode(table, names, values)
    return {
        (f"json_{name}" if isinstance(table.columns[name].type, JSON) else name): value
        for name, value in row.items()
    }


def present_tables(url: str) -> list[str]:
    """Which of the deployment's tables the database at `url` already has."""
    engine = open_engine(url)
    try:
        with engine.connect() as connection:
            present = set(inspect(connection).get_table_names())
    except SQLAlchemyError as error:
        raise BackupError(f"cannot open the database {shown(url)}: {error}") from None
    finally:
        engine.dispose()
    return sorted(present & {table.name for table in known_tables()})


def load_registry(source: Path, url: str) -> None:
    """Create the deployment's tables in the (empty) database at `url` and insert the dump's
    rows, all in one transaction."""
    engine = open_engine(url)
    try:
        with engine.begin() as connection:
            registry_tables.Base.metadata.create_all(connection)
            airlock_tables.Base.metadata.create_all(connection)
            for table, names, batch in _dumped(source):
                connection.execute(
                    _insert(table, names), [_parameters(table, names, row) for row in batch]
                )
            if connection.dialect.name == "postgresql":
                _advance_sequences(connection)
    except (SQLAlchemyError, ValueError, TypeError) as error:
        raise BackupError(f"cannot restore the database into {shown(url)}: {error}") from None
    finally:
        engine.dispose()


def _advance_sequences(connection: Connection) -> None:
    """PostgreSQL numbers new rows from a sequence, which the rows put in by their own ids did
    not move: set each to its table's highest id."""
    for table in known_tables():
        keys = list(table.primary_key.columns)
        if len(keys) != 1 or not isinstance(keys[0].type, Integer):
            continue
        sequence = connection.scalar(select(func.pg_get_serial_sequence(table.name, keys[0].name)))
        highest = connection.scalar(select(func.max(keys[0])))
        if sequence is not None and highest is not None:
            connection.execute(
                text("SELECT setval(:sequence, :highest)"),
                {"sequence": sequence, "highest": highest},
            )


def drop_registry(url: str) -> None:
    """Remove the deployment's tables from the database at `url` (a restore that failed after
    filling it)."""
    engine = open_engine(url)
    try:
        airlock_tables.Base.metadata.drop_all(engine)
        registry_tables.Base.metadata.drop_all(engine)
    finally:
        engine.dispose()


def count_rows(url: str) -> dict[str, int]:
    """How many projects, members, grants and releases the database at `url` holds."""
    engine = open_engine(url)
    requests = airlock_tables.ExportRequest.__table__
    try:
        with engine.connect() as connection:

            def count(table: Table, *where) -> int:
                return connection.scalar(select(func.count()).select_from(table).where(*where))

            return {
                "projects": count(registry_tables.Project.__table__),
                "members": count(registry_tables.Membership.__table__),
                "grants": count(registry_tables.DatasetGrant.__table__),
                "releases": count(requests, requests.c.status == airlock_tables.RELEASED),
            }
    finally:
        engine.dispose()
