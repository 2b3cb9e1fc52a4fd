"""Audit query latency: one user over one day, in a log of 1,000,000 records.

Enclave answers from the audit service's in-memory index (built once at start-up) and reads
the matching records from the log's segments; SQLite answers from a table of the same records
with an index on (actor, time), the way one would otherwise keep an audit trail. Both return
the records as dicts, newest first. Also shown: the plain scan that `enclave audit query` does,
and what each side costs to build.

    .venv/bin/python bench/audit_query.py [--records 1000000] [--users 200] [--repeats 20]
"""

from __future__ import annotations

import argparse
import json
import resource
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

from enclave_hub.audit import AuditLog
from enclave_hub.audit.index import LogIndex
from enclave_hub.audit.query import Filters, query, records
from enclave_hub.audit.store import canonical

DAY = 86400.0
SPAN_DAYS = 30
START = 1_790_000_000.0
CHUNK = 10_000


def event(n: int, total: int, users: int) -> dict:
    return {
        "actor": f"user{n * 7919 % users:03d}",
        "action": ("cell.execute", "file.save", "kernel.start", "dataset.mount")[n % 4],
        "target": f"kernel-{n % 97}",
        "project": f"project-{n % 13}",
        "outcome": "ok",
        "time": START + n * (SPAN_DAYS * DAY / total),
        "source": "169.254.0.6",
        "session": f"{n // 500:08x}",
        "code": "df = pd.read_csv('results/table.csv')\ndf.describe()",
    }


def build_log(folder: Path, total: int, users: int) -> AuditLog:
    log = AuditLog(folder / "audit", folder / "signing.key", interval=3600)
    for first in range(0, total, CHUNK):
        futures = [
            log.submit(event(n, total, users)) for n in range(first, min(first + CHUNK, total))
        ]
        futures[-1].result()
    return log


def build_sqlite(path: Path, log_folder: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE events (seq INTEGER PRIMARY KEY, actor TEXT, time REAL, payload TEXT)")
    db.executemany(
        "INSERT INTO events VALUES (?, ?, ?, ?)",
        ((r["seq"], r["actor"], r["time"], canonical(r).decode()) for r in records(log_folder)),
    )
    db.execute("CREATE INDEX events_by_actor_time ON events (actor, time)")
    db.commit()
    return db


def timed(repeats: int, ask) -> tuple[float, list[dict]]:
    """Median seconds of `repeats` runs, and the answer."""
    times, answer = [], []
    for _ in range(repeats):
        began = time.perf_counter()
        answer = ask()
        times.append(time.perf_counter() - began)
    return statistics.median(times), answer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        began = time.perf_counter()
        log = build_log(folder, args.records, args.users)
        written = time.perf_counter() - began
        log_folder = folder / "audit"
        size = sum(p.stat().st_size for p in log_folder.glob("*.seg"))

        began = time.perf_counter()
        index = LogIndex(log.store.read)
        index.add_all(records(log_folder))
        indexed = time.perf_counter() - began

        began = time.perf_counter()
        db = build_sqlite(folder / "events.sqlite", log_folder)
        sqlite_built = time.perf_counter() - began

        user = "user042"
        since = START + 15 * DAY
        until = since + DAY
        filters = Filters(user=user, since=since, until=until)

        ours, found = timed(args.repeats, lambda: index.search(filters, limit=args.records))

        def ask_sqlite() -> list[dict]:
            rows = db.execute(
                "SELECT payload FROM events WHERE actor = ? AND time >= ? AND time < ? "
                "ORDER BY seq DESC",
                (user, since, until),
            )
            return [json.loads(payload) for (payload,) in rows]

        theirs, expected = timed(args.repeats, ask_sqlite)
        assert found == expected, "both must return the same records"
        scanned, scan_found = timed(1, lambda: list(query(log_folder, filters)))
        assert scan_found[::-1] == found
        log.close()
        db.close()

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"Audit query: {args.records:,} records ({size / 2**20:.0f} MiB of segments), "
        f"{args.users} users over {SPAN_DAYS} days; one user over one day = {len(found)} records"
    )
    print(f"  {'':34}{'median':>12}")
    print(f"  {'Enclave (service index + reads)':34}{ours * 1000:>10.2f} ms")
    print(f"  {'SQLite, index on (actor, time)':34}{theirs * 1000:>10.2f} ms")
    print(f"  ratio SQLite / Enclave: {theirs / ours:.2f} (above 1: Enclave is faster)")
    print(f"  plain scan (`enclave audit query`): {scanned:.2f} s")
    print(
        f"  building: log {written:.1f} s, Enclave index {indexed:.1f} s at service start, "
        f"SQLite table and index {sqlite_built:.1f} s"
    )
    print(f"  peak memory (whole run): {peak:.0f} MiB")


if __name__ == "__main__":
    main()
