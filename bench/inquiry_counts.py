"""Cohort counts of the data inquiry portal: Enclave's counter (DuckDB over the ingested
Parquet and every dataset's persons file) against the same counts in PostgreSQL with the OHDSI
indices, with 1 and 10 users asking at once, side by side in one run: p50 and p95 latency.

The commons is the synthetic CDM of `omop_cohorts.py` (1,000,000 persons, about 100 events
each), ingested by Enclave, plus persons files for the other kinds: a CT or MR series for 10%
of the persons, a genome for 50%, a slide for 5% (the pseudonyms the records carry). Each user
asks the four counts below in turn, `--rounds` times, in a thread of one process (as the
service runs them); PostgreSQL's users each hold a connection. The counts of both are checked
equal before the timings are printed.

    .venv/bin/python bench/inquiry_counts.py [--persons 1000000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from measure import peak_rss
from omop_cohorts import (
    ANCESTOR,
    DRUGS,
    MEASUREMENT,
    POSTGRES_SETTINGS,
    ingest,
    load_postgres,
    write_source,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

KEY = b"k" * 32  # the key omop_cohorts' ingest pseudonymises with
# Which persons have each other kind of data: every n-th person.
KIND_EVERY = {"volume": 10, "genotypes": 2, "slide": 20}
USERS = (1, 10)


def criteria_list():
    from enclave_hub.inquiry.counts import Criteria

    return {
        "condition": Criteria(conditions=(ANCESTOR,)),
        "condition, drug, age, sex": Criteria(
            conditions=(ANCESTOR,), drugs=DRUGS, age=(40, 70), sex="female"
        ),
        "condition and a CT, a genome": Criteria(
            conditions=(ANCESTOR,), kinds=("volume", "genotypes")
        ),
        "measurement and a slide": Criteria(measurements=(MEASUREMENT,), kinds=("slide",)),
    }


def write_kinds(root: Path, persons: int) -> dict[str, list[str]]:
    """A dataset per other kind whose persons file names every n-th person; the pseudonyms by
    kind (for PostgreSQL)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from enclave.pseudonyms import Pseudonymizer

    pseudonyms = Pseudonymizer(KEY)
    found = {}
    for kind, every in KIND_EVERY.items():
        people = [pseudonyms.patient(f"MRN{n}") for n in range(1, persons + 1, every)]
        folder = root / f"ds-{kind}"
        folder.mkdir()
        manifest = {"id": folder.name, "kind": kind, "version": 1, "objects": {}}
        manifest["objects"]["all"] = {"kind": kind, "path": "all"}
        (folder / "dataset.json").write_text(json.dumps(manifest))
        table = pa.table(
            {"person": people, "object": ["all"] * len(people), "kind": [kind] * len(people)}
        )
        pq.write_table(table, folder / "persons.parquet")
        found[kind] = people
    return found


def load_kinds(url: str, kinds: dict[str, list[str]]) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute("CREATE UNLOGGED TABLE person_kinds (person text, kind text)")
        with connection.cursor().copy("COPY person_kinds (person, kind) FROM STDIN") as copy:
            for kind, people in kinds.items():
                for person in people:
                    copy.write_row((person, kind))
        connection.execute("CREATE INDEX idx_person_kinds ON person_kinds (kind, person)")
        connection.execute("CREATE INDEX idx_person_source ON person (person_source_value)")
        connection.execute("ANALYZE")


def postgres_sql(criteria) -> tuple[str, list]:
    """The count in PostgreSQL's SQL, as Enclave's counter asks it of its views."""
    from datetime import date

    from enclave.omop.cohorts import SEXES

    conditions, parameters = ["true"], []
    domains = {
        "conditions": ("condition_occurrence", "condition_concept_id"),
        "drugs": ("drug_exposure", "drug_concept_id"),
        "measurements": ("measurement", "measurement_concept_id"),
    }
    for name, (table, column) in domains.items():
        chosen = list(getattr(criteria, name))
        if chosen:
            conditions.append(
                f"p.person_id IN (SELECT person_id FROM {table} WHERE {column} = ANY(%s) OR "
                f"{column} IN (SELECT descendant_concept_id FROM concept_ancestor WHERE "
                "ancestor_concept_id = ANY(%s)))"
            )
            parameters += [chosen, chosen]
    low, high = criteria.age
    if low is not None:
        conditions.append("p.year_of_birth <= %s")
        parameters.append(date.today().year - low)
    if high is not None:
        conditions.append("p.year_of_birth >= %s")
        parameters.append(date.today().year - high)
    if criteria.sex:
        conditions.append("p.gender_concept_id = %s")
        parameters.append(SEXES[criteria.sex])
    for kind in criteria.kinds:
        conditions.append(
            "p.person_source_value IN (SELECT person FROM person_kinds WHERE kind = %s)"
        )
        parameters.append(kind)
    where = " AND ".join(conditions)
    query = f"SELECT count(DISTINCT p.person_source_value) FROM person p WHERE {where}"
    return query, parameters


def timed(users: int, rounds: int, ask) -> list[float]:
    """Each of `users` asks every count `rounds` times, all at once: the latencies."""
    names = list(criteria_list())

    def one_user(user: int) -> list[float]:
        latencies = []
        for round_ in range(rounds):
            for offset in range(len(names)):
                name = names[(user + round_ + offset) % len(names)]
                began = time.perf_counter()
                ask(user, name)
                latencies.append(time.perf_counter() - began)
        return latencies

    with ThreadPoolExecutor(users) as pool:
        return [t for found in pool.map(one_user, range(users)) for t in found]


def percentiles(latencies: list[float]) -> tuple[float, float]:
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    return cuts[49], cuts[94]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--persons", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    import psycopg
    from postgres_harness import new_database, postgresql_server

    from enclave_hub.inquiry.counts import CommonsCounts

    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as scratch:
        Path(scratch).chmod(0o755)  # the PostgreSQL server reads its CSV from here
        source, root = Path(scratch) / "source", Path(scratch) / "data"
        source.mkdir()
        events = write_source(source, args.persons)
        done = ingest(source, root)
        kinds = write_kinds(root, args.persons)
        print(
            f"commons: {args.persons:,} persons, {events:,} event rows (ingested in "
            f"{done['seconds']:.0f} s); persons files: "
            + ", ".join(f"{k} {len(v):,}" for k, v in kinds.items())
        )
        counter = CommonsCounts(root)
        criteria = criteria_list()
        expected = {name: counter.count(c) for name, c in criteria.items()}
        with postgresql_server() as server:
            url = new_database(server).replace("postgresql+psycopg://", "postgresql://")
            with psycopg.connect(url, autocommit=True) as connection:
                for name, value in POSTGRES_SETTINGS.items():
                    connection.execute(f"ALTER SYSTEM SET {name} = '{value}'")
                connection.execute("SELECT pg_reload_conf()")
            loading = load_postgres(url, root / "bench" / "cdm.omop", Path(scratch) / "csv")
            load_kinds(url, kinds)
            print(f"PostgreSQL: loaded and indexed (OHDSI indices) in {loading:.0f} s")
            connections = [psycopg.connect(url) for _ in range(max(USERS))]
            sql = {name: postgres_sql(c) for name, c in criteria.items()}
            for name, (query, parameters) in sql.items():
                found = connections[0].execute(query, parameters).fetchone()[0]
                if found != expected[name]:
                    raise RuntimeError(f"{name}: Enclave {expected[name]}, PostgreSQL {found}")
            print("counts: " + ", ".join(f"{n} {c:,}" for n, c in expected.items()) + " (equal)")
            engines = {
                "Enclave": lambda _user, name: counter.count(criteria[name]),
                "PostgreSQL": lambda user, name: connections[user].execute(*sql[name]).fetchone(),
            }
            print(f"{'users':>5} {'engine':<11} {'p50 s':>7} {'p95 s':>7} {'p95 / Enclave':>14}")
            for users in USERS:
                results = {}
                for engine, ask in engines.items():
                    timed(users, 1, ask)  # warm
                    results[engine] = percentiles(timed(users, args.rounds, ask))
                for engine, (p50, p95) in results.items():
                    ratio = p95 / results["Enclave"][1]
                    print(f"{users:>5} {engine:<11} {p50:>7.3f} {p95:>7.3f} {ratio:>13.1f}x")
            for connection in connections:
                connection.close()
        print(
            f"peak resident memory of this process (Enclave's counter): "
            f"{peak_rss() / 2**30:.2f} GiB"
        )


if __name__ == "__main__":
    main()
