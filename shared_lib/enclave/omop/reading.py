"""`enclave.open_omop`: an ingested OMOP CDM as a read-only DuckDB connection on which every
CDM 5.4 table is a view of its own name (a table the source lacked is an empty view, so
standard queries run everywhere; `<event table>_by_concept` is its copy ordered by concept),
with a memory limit and a spill folder in the user's cache (on disk), so that queries over
tables larger than memory finish. `dask_tables` gives the same tables as Dask DataFrames over
the same Parquet, for work that outgrows one machine.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

import duckdb

from ..catalog import CatalogError, locate
from .cdm import EVENTS, by_concept, by_concept_columns, tables

MEMORY_SHARE = 0.5  # of the session's memory limit, or of the machine's memory


def open_omop(
    reference: str | os.PathLike, root: Path | None = None, memory_limit: str | None = None
) -> duckdb.DuckDBPyConnection:
    """A read-only connection to the CDM `reference` names (`dataset-id/object-id`, or a
    store by path). `memory_limit` (DuckDB's form, '4GB') defaults to half the session's."""
    folder, _ = locate(reference, "omop", root)
    if not folder.is_dir():
        raise CatalogError(f"{folder}: not an OMOP store")
    work = Path(tempfile.mkdtemp(prefix="omop-", dir=_work_root()))
    catalog = work / "views.duckdb"
    with duckdb.connect(str(catalog)) as writing:
        for table, columns in tables().items():
            stored = folder / f"{table}.parquet"
            if stored.is_file():
                body = f"SELECT * FROM read_parquet('{_escaped(stored)}')"
            else:
                typed = ", ".join(f"CAST(NULL AS {c.stored_type}) AS {c.name}" for c in columns)
                body = f"SELECT {typed} WHERE false"
            writing.execute(f'CREATE VIEW "{table}" AS {body}')
        for table in EVENTS:  # the copies by concept; where there is none, the table itself
            stored = folder / f"{by_concept(table)}.parquet"
            columns = ", ".join(by_concept_columns(table))
            body = (
                f"SELECT * FROM read_parquet('{_escaped(stored)}')"
                if stored.is_file()
                else f'SELECT {columns} FROM "{table}"'
            )
            writing.execute(f'CREATE VIEW "{by_concept(table)}" AS {body}')
    return duckdb.connect(
        str(catalog),
        read_only=True,
        config={
            "memory_limit": memory_limit or _default_memory_limit(),
            "temp_directory": str(work / "spill"),
        },
    )


def dask_tables(reference: str | os.PathLike, root: Path | None = None) -> dict:
    """Every stored table of the CDM as a Dask DataFrame, by name (lazy: nothing is read
    until computed, on the project's cluster when `enclave.dask_client()` is connected)."""
    import dask.dataframe

    folder, _ = locate(reference, "omop", root)
    return {
        path.stem: dask.dataframe.read_parquet(str(path))
        for path in sorted(folder.glob("*.parquet"))
        if path.stem in tables()
    }


def _work_root() -> Path:
    """Where the views and the spill go: the user's cache, on disk (a session's /tmp is in
    memory, and would count against the very limit that spilling is for)."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    root = cache / "enclave" / "omop"
    root.mkdir(parents=True, exist_ok=True)
    return root


def _default_memory_limit() -> str:
    """Half the session's memory: MEM_LIMIT (the session's cgroup limit, as JupyterHub's
    spawners announce it), else the machine's."""
    limit = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    with contextlib.suppress(KeyError, ValueError):
        limit = min(limit, int(os.environ["MEM_LIMIT"]))
    return f"{max(int(limit * MEMORY_SHARE) >> 20, 64)}MB"


def _escaped(path: Path) -> str:
    return str(path).replace("'", "''")
