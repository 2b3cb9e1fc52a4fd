"""Durable audit ingest: Enclave's log against SQLite in WAL mode with synchronous=FULL.

Both acknowledge an event only once it is on disk. W writer threads each append the same
records; the figure is events acknowledged per second, with the ratio Enclave / SQLite. SQLite
gets one connection per writer (its usual concurrent use); each insert is its own transaction.

    .venv/bin/python bench/audit_ingest.py [--writers 1 8 64] [--seconds 5]
"""

from __future__ import annotations

import argparse
import json
import resource
import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from enclave_hub.audit import AuditLog


def sample_event(writer: int, n: int) -> dict:
    return {
        "actor": f"user{writer:02d}",
        "action": "kernel.execute",
        "target": f"cell {n}",
        "project": "cancer-imaging",
        "outcome": "ok",
        "time": time.time(),
        "source": "169.254.0.6",
        "session": f"user{writer:02d}/cancer-imaging",
        "code": "df = pd.read_csv('results/table.csv')\ndf.describe()",
    }


def drive(writers: int, seconds: float, make_append: Callable[[], Callable[[dict], None]]) -> int:
    """Run `writers` threads appending for `seconds`; return the events acknowledged."""
    counts = [0] * writers
    stop = threading.Event()

    def work(index: int) -> None:
        append = make_append()
        n = 0
        while not stop.is_set():
            append(sample_event(index, n))
            n += 1
        counts[index] = n

    threads = [threading.Thread(target=work, args=(i,)) for i in range(writers)]
    for thread in threads:
        thread.start()
    time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join()
    return sum(counts)


def enclave_rate(folder: Path, writers: int, seconds: float) -> float:
    log = AuditLog(folder / f"enclave-{writers}", folder / "signing.key")
    try:
        return drive(writers, seconds, lambda: log.append) / seconds
    finally:
        log.close()


def sqlite_rate(folder: Path, writers: int, seconds: float) -> float:
    path = folder / f"sqlite-{writers}.db"
    setup = sqlite3.connect(path)
    setup.execute("PRAGMA journal_mode=WAL")
    setup.execute("CREATE TABLE events (seq INTEGER PRIMARY KEY, record TEXT NOT NULL)")
    setup.close()

    def make_append() -> Callable[[dict], None]:
        connection = sqlite3.connect(path, timeout=60, check_same_thread=False)
        connection.execute("PRAGMA synchronous=FULL")

        def append(event: dict) -> None:
            with connection:
                connection.execute(
                    "INSERT INTO events (record) VALUES (?)", (json.dumps(event, sort_keys=True),)
                )

        return append

    return drive(writers, seconds, make_append) / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writers", type=int, nargs="+", default=[1, 8, 64])
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    record_bytes = len(json.dumps(sample_event(0, 0), sort_keys=True))
    print(
        f"records of about {record_bytes} bytes; {args.seconds:.0f} s per run; "
        f"disk under {tempfile.gettempdir()}"
    )
    print(f"{'writers':>8}{'enclave ev/s':>14}{'sqlite ev/s':>14}{'ratio':>8}")
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        for writers in args.writers:
            ours = enclave_rate(folder, writers, args.seconds)
            theirs = sqlite_rate(folder, writers, args.seconds)
            print(f"{writers:>8}{ours:>14.0f}{theirs:>14.0f}{ours / theirs:>8.2f}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak memory of this process: {peak:.0f} MiB")


if __name__ == "__main__":
    main()
