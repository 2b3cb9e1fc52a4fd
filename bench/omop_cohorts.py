"""OMOP CDM ingest and cohort queries: Enclave (DuckDB on the ingested Parquet) against
PostgreSQL with the OHDSI indices (what OMOP sites run today) and against pandas on the same
Parquet, side by side in one run, each query in a process of its own with its peak memory.

The CDM is synthetic, written by the benchmark: persons with visits, conditions, drugs and
measurements (about 100 events a person), concepts drawn with skewed frequencies (a few common,
most rare), conditions grouped under 50 ancestors in `concept_ancestor`. Three cohorts:

- concept: persons with a condition in a concept set with its descendants;
- temporal: persons whose first such condition is followed by a drug of a set within 30 days;
- threshold: persons with a measurement of one concept at or above a value.

Each query runs in a process of its own, once to warm up and then `--rounds` times; the best
is kept. PostgreSQL's peak is its client's; the server holds its shared buffers besides.

    .venv/bin/python bench/omop_cohorts.py [--persons 1000000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from measure import in_child, main_or_child, report

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

ANCESTOR = 900_007  # 40 condition concepts descend from it
DRUGS = tuple(range(300_000, 300_020))
MEASUREMENT, THRESHOLD = 400_003, 150.0
EVENTS = {  # per person, on average
    "visit_occurrence": 10,
    "condition_occurrence": 20,
    "drug_exposure": 25,
    "measurement": 45,
}
MEMORY_LIMIT = "4GB"  # Enclave's ingest and queries
POSTGRES_SETTINGS = {  # a tuned server, as an OMOP site would run one on this machine
    "shared_buffers": "4GB",
    "work_mem": "256MB",
    "maintenance_work_mem": "1GB",
    "effective_cache_size": "12GB",
    "max_parallel_workers_per_gather": "2",
    "synchronous_commit": "off",
}
# The OHDSI CDM 5.4 indices on the tables the queries read (clustered on person_id).
OHDSI_INDICES = [
    ("person", "person_id", True),
    ("condition_occurrence", "person_id", True),
    ("condition_occurrence", "condition_concept_id", False),
    ("drug_exposure", "person_id", True),
    ("drug_exposure", "drug_concept_id", False),
    ("measurement", "person_id", True),
    ("measurement", "measurement_concept_id", False),
    ("concept_ancestor", "ancestor_concept_id", True),
    ("concept_ancestor", "descendant_concept_id", False),
]


def write_source(folder: Path, persons: int) -> int:
    """The synthetic CDM as Parquet in `folder`; the number of event rows."""
    import duckdb

    connection = duckdb.connect(config={"memory_limit": MEMORY_LIMIT})
    connection.execute("SELECT setseed(0.17)")
    skewed = "CAST(floor({n} * pow(random(), 3)) AS BIGINT)"  # low ids common, most rare
    tables = {
        "person": f"""SELECT range + 1 AS person_id, CASE WHEN random() < 0.5 THEN 8507
            ELSE 8532 END AS gender_concept_id, 1930 + CAST(random() * 75 AS INTEGER) AS
            year_of_birth, 0 AS race_concept_id, 0 AS ethnicity_concept_id,
            'MRN' || CAST(range + 1 AS VARCHAR) AS person_source_value FROM range({persons})""",
        "visit_occurrence": """SELECT person_id, 9202 AS visit_concept_id, day AS
            visit_start_date, day AS visit_end_date, 32817 AS visit_type_concept_id""",
        "condition_occurrence": f"""SELECT person_id, 100000 + {skewed.format(n=2000)} AS
            condition_concept_id, day AS condition_start_date, 32817 AS
            condition_type_concept_id""",
        "drug_exposure": f"""SELECT person_id, 300000 + {skewed.format(n=1000)} AS
            drug_concept_id, day AS drug_exposure_start_date, day + 30 AS
            drug_exposure_end_date, 32817 AS drug_type_concept_id""",
        "measurement": f"""SELECT person_id, 400000 + {skewed.format(n=100)} AS
            measurement_concept_id, day AS measurement_date, 32817 AS
            measurement_type_concept_id, round(100 + 25 * (random() + random() + random() - 1.5)
            * 2, 1) AS value_as_number""",
    }
    connection.execute(f"COPY ({tables['person']}) TO '{folder}/person.parquet'")
    rows = 0
    for table, per_person in EVENTS.items():
        events = persons * per_person
        key = table.split("_")[0] + ("_occurrence_id" if table.endswith("occurrence") else "_id")
        key = {"drug_exposure": "drug_exposure_id", "measurement": "measurement_id"}.get(table, key)
        connection.execute(
            f"COPY (SELECT row_number() OVER () AS {key}, * FROM ({tables[table]} FROM "
            f"(SELECT 1 + CAST(random() * {persons - 1} AS BIGINT) AS person_id, DATE "
            f"'2010-01-01' + CAST(random() * 5000 AS INTEGER) AS day FROM range({events}))))"
            f" TO '{folder}/{table}.parquet'"
        )
        rows += events
    ancestry = (
        "SELECT 100000 + range AS ancestor_concept_id, 100000 + range AS descendant_concept_id, "
        "0 AS min_levels_of_separation, 0 AS max_levels_of_separation FROM range(2000) UNION ALL "
        "SELECT 900000 + range % 50, 100000 + range, 1, 1 FROM range(2000)"
    )
    connection.execute(f"COPY ({ancestry}) TO '{folder}/concept_ancestor.parquet'")
    return rows


def queries(concepts: tuple[int, ...]) -> dict[str, str]:
    """The three cohorts in SQL that DuckDB and PostgreSQL both run."""
    chosen, drugs = ", ".join(map(str, concepts)), ", ".join(map(str, DRUGS))
    return {
        "concept": "SELECT count(DISTINCT person_id) FROM condition_occurrence "
        f"WHERE condition_concept_id IN ({chosen})",
        "temporal": "SELECT count(*) FROM (SELECT person_id, min(condition_start_date) AS d "
        f"FROM condition_occurrence WHERE condition_concept_id IN ({chosen}) GROUP BY person_id)"
        " e WHERE EXISTS (SELECT 1 FROM drug_exposure x WHERE x.person_id = e.person_id AND "
        f"x.drug_concept_id IN ({drugs}) AND x.drug_exposure_start_date BETWEEN e.d AND e.d + 30)",
        "threshold": "SELECT count(DISTINCT person_id) FROM measurement WHERE "
        f"measurement_concept_id = {MEASUREMENT} AND value_as_number >= {THRESHOLD}",
    }


def prepare_enclave(store: str, query: str, _concepts: str):
    """The connection and what runs the query on it (the DuckDB views made beforehand)."""
    import enclave
    from enclave.omop import Cohort, concept_set

    cdm = enclave.open_omop(Path(store), memory_limit=MEMORY_LIMIT)

    def run() -> int:
        concepts = concept_set(cdm, [ANCESTOR])
        cohort = Cohort(cdm, "condition_occurrence", concepts)
        if query == "concept":
            return cohort.count()
        if query == "temporal":
            return cohort.require("drug_exposure", DRUGS, within_days=(0, 30)).count()
        return Cohort(cdm, "measurement", (MEASUREMENT,), (THRESHOLD, None)).count()

    return run


def prepare_postgres(url: str, query: str, concepts: str):
    import psycopg

    connection = psycopg.connect(url)
    chosen = tuple(int(c) for c in concepts.split(","))
    return lambda: connection.execute(queries(chosen)[query]).fetchone()[0]


def prepare_pandas(store: str, query: str, concepts: str):
    import pandas as pd

    chosen = [int(c) for c in concepts.split(",")]

    def read(table: str, columns: list[str]) -> pd.DataFrame:
        return pd.read_parquet(f"{store}/{table}.parquet", columns=columns)

    def run() -> int:
        if query == "threshold":
            found = read("measurement", ["person_id", "measurement_concept_id", "value_as_number"])
            found = found[(found.measurement_concept_id == MEASUREMENT)]
            return int(found[found.value_as_number >= THRESHOLD].person_id.nunique())
        conditions = read(
            "condition_occurrence", ["person_id", "condition_concept_id", "condition_start_date"]
        )
        conditions = conditions[conditions.condition_concept_id.isin(chosen)]
        if query == "concept":
            return int(conditions.person_id.nunique())
        first = conditions.groupby("person_id").condition_start_date.min()
        drugs = read("drug_exposure", ["person_id", "drug_concept_id", "drug_exposure_start_date"])
        drugs = drugs[drugs.drug_concept_id.isin(DRUGS)].merge(
            first.rename("d").reset_index(), on="person_id"
        )
        start, index = pd.to_datetime(drugs.drug_exposure_start_date), pd.to_datetime(drugs.d)
        within = drugs[(start >= index) & (start <= index + pd.Timedelta(days=30))]
        return int(within.person_id.nunique())

    return run


PREPARE = {"enclave": prepare_enclave, "postgres": prepare_postgres, "pandas": prepare_pandas}


def child(engine: str, query: str, place: str, concepts: str, rounds: str) -> None:
    """One query by one engine, connected beforehand (pandas reads its Parquet each time, as
    it would): run once to warm up, then the best of `rounds`."""
    run = PREPARE[engine](place, query, concepts)
    count = run()
    times = []
    for _ in range(int(rounds)):
        began = time.perf_counter()
        if run() != count:
            raise RuntimeError(f"{engine} {query}: a different count on another run")
        times.append(time.perf_counter() - began)
    report({"seconds": min(times), "count": count})


def ingest(source: Path, root: Path) -> dict:
    """Enclave's ingest of the source, in a child: rows per second and peak memory."""
    import subprocess

    began = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", INGEST_CHILD, str(source), str(root)],
        capture_output=True,
        text=True,
        cwd=Path(__file__).parent,  # where `measure` is
    )
    if done.returncode != 0:
        raise RuntimeError(done.stderr)
    seconds = time.perf_counter() - began
    peak = int(done.stdout.strip().splitlines()[-1])
    return {"seconds": seconds, "peak_rss": peak}


INGEST_CHILD = f"""
import sys
from pathlib import Path
from enclave.omop.ingest import ingest_omop
from measure import peak_rss
(outcome,) = ingest_omop(Path(sys.argv[1]), "bench", Path(sys.argv[2]), b"k" * 32, "cdm",
                         False, lambda line: None, "{MEMORY_LIMIT}")
assert outcome.error is None, outcome.error
print(peak_rss())
"""


def load_postgres(url: str, store: Path, scratch: Path) -> float:
    """The ingested tables into PostgreSQL (CSV through COPY), then the OHDSI indices;
    seconds."""
    import duckdb
    import psycopg

    began = time.perf_counter()
    reader = duckdb.connect(config={"memory_limit": MEMORY_LIMIT})
    scratch.mkdir(mode=0o755)
    with psycopg.connect(url, autocommit=True) as connection:
        for table in ("person", "concept_ancestor", *EVENTS):
            source = f"'{store}/{table}.parquet'"
            described = reader.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()
            columns = ", ".join(f"{name} {_pg_type(kind)}" for name, kind, *_ in described)
            connection.execute(f"CREATE UNLOGGED TABLE {table} ({columns})")
            csv = scratch / f"{table}.csv"
            reader.execute(f"COPY (SELECT * FROM {source}) TO '{csv}' (HEADER false)")
            csv.chmod(0o644)
            connection.execute(f"COPY {table} FROM '{csv}' (FORMAT csv)")
            csv.unlink()
        for table, column, clustered in OHDSI_INDICES:
            name = f"idx_{table}_{column}"
            connection.execute(f"CREATE INDEX {name} ON {table} ({column})")
            if clustered:
                connection.execute(f"CLUSTER {table} USING {name}")
        connection.execute("ANALYZE")
    return time.perf_counter() - began


def _pg_type(duck_type) -> str:
    return {
        "BIGINT": "bigint",
        "INTEGER": "integer",
        "DATE": "date",
        "DOUBLE": "double precision",
        "VARCHAR": "text",
        "TIMESTAMP": "timestamp",
    }.get(str(duck_type), "text")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--persons", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    from postgres_harness import new_database, postgresql_server

    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as scratch:
        Path(scratch).chmod(0o755)  # the PostgreSQL server reads its CSV from here
        source, root = Path(scratch) / "source", Path(scratch) / "data"
        source.mkdir()
        events = write_source(source, args.persons)
        rows = events + args.persons + 4000
        print(f"synthetic CDM: {args.persons:,} persons, {events:,} event rows")
        done = ingest(source, root)
        print(
            f"Enclave ingest: {rows / done['seconds']:,.0f} rows/s ({done['seconds']:.1f} s), "
            f"peak {done['peak_rss'] / 2**30:.2f} GiB (memory limit {MEMORY_LIMIT})"
        )
        store = root / "bench" / "cdm.omop"
        import enclave
        from enclave.omop import concept_set

        concepts = ",".join(map(str, concept_set(enclave.open_omop(store), [ANCESTOR])))
        with postgresql_server() as server:
            url = new_database(server).replace("postgresql+psycopg://", "postgresql://")
            import psycopg

            with psycopg.connect(url, autocommit=True) as connection:
                for name, value in POSTGRES_SETTINGS.items():
                    connection.execute(f"ALTER SYSTEM SET {name} = '{value}'")
                connection.execute("SELECT pg_reload_conf()")
            loading = load_postgres(url, store, Path(scratch) / "csv")
            print(f"PostgreSQL load and OHDSI indices: {loading:.0f} s")
            here = str(Path(__file__).resolve())
            print(f"{'query':<10} {'engine':<9} {'count':>9} {'seconds':>9} {'peak GiB':>9} ratio")
            for query in ("concept", "temporal", "threshold"):
                timings = {}
                for engine, place in (
                    ("enclave", str(store)),
                    ("postgres", url),
                    ("pandas", str(store)),
                ):
                    best = in_child(here, engine, query, place, concepts, str(args.rounds))
                    timings[engine] = best[0]["seconds"]
                    ratio = timings[engine] / timings["enclave"]
                    print(
                        f"{query:<10} {engine:<9} {best[0]['count']:>9,} "
                        f"{best[0]['seconds']:>9.3f} {best[1] / 2**30:>9.2f} {ratio:.1f}x"
                    )


if __name__ == "__main__":
    main_or_child(main, child)
