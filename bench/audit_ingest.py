"""Durable audit ingest: Enclave's log against SQLite in WAL mode with synchronous=FULL.

Both acknowledge an event only once it is on disk. W writer threads each append the same
records; the figure is events acknowledged per second, with the ratio Enclave / SQLite. SQLite
gets one connection per writer (its usual concurrent use); each insert is its own transaction.
The last columns send the same events through the audit service's HTTP endpoint with Enclave's
client, W callers at once (the path the hub and the sessions take), the service running in a
process of its own.

    .venv/bin/python bench/audit_ingest.py [--writers 1 8 64] [--seconds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import resource
import secrets
import socket
import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from tornado import httpserver

from enclave_hub.audit import AuditLog
from enclave_hub.audit.attribution import TokenResolver
from enclave_hub.audit.ratelimit import FailureLimiter
from enclave_hub.audit.service import MAX_BODY, AuditService, make_app
from enclave_hub.core.audit_client import AuditClient
from enclave_hub.core.services import AUDIT_EVENTS_PATH
from enclave_hub.core.site_config import SiteConfig


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


def _serve(folder: Path, port: int, token: str) -> None:
    """The audit service's HTTP ingest over its own log, in a process of its own."""

    async def serve() -> None:
        site = SiteConfig(state_dir=folder)
        log = AuditLog(folder / "service-log", folder / "signing.key")
        resolver = TokenResolver("http://127.0.0.1:9/hub/api")  # sessions do not send here
        service = AuditService(log, token, resolver, FailureLimiter())
        server = httpserver.HTTPServer(make_app(service, site, token), max_body_size=MAX_BODY)
        server.listen(port, address="127.0.0.1")
        await asyncio.Event().wait()

    asyncio.run(serve())


def service_rate(folder: Path, writers: int, seconds: float) -> float:
    """Events acknowledged through the service's HTTP endpoint: `writers` callers at once of
    one `AuditClient`, as the hub's handlers or a session's cells call it (what arrives while a
    request is out goes in the next)."""
    token, port = secrets.token_hex(32), free_port()
    server = multiprocessing.Process(target=_serve, args=(folder, port, token), daemon=True)
    server.start()
    url = f"http://127.0.0.1:{port}{AUDIT_EVENTS_PATH}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)

        async def run() -> int:
            client = AuditClient(url, token, timeout=60)
            stop = time.monotonic() + seconds

            async def writer(index: int) -> int:
                n = 0
                while time.monotonic() < stop:
                    event = {k: v for k, v in sample_event(index, n).items() if k != "time"}
                    await client.record(**event)  # the service stamps the time
                    n += 1
                return n

            return sum(await asyncio.gather(*(writer(i) for i in range(writers))))

        return asyncio.run(run()) / seconds
    finally:
        server.terminate()
        server.join()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


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
    print(
        f"{'writers':>8}{'enclave ev/s':>14}{'sqlite ev/s':>14}{'ratio':>8}"
        f"{'via HTTP ev/s':>16}{'ratio':>8}"
    )
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        for writers in args.writers:
            ours = enclave_rate(folder, writers, args.seconds)
            theirs = sqlite_rate(folder, writers, args.seconds)
            served = service_rate(folder / f"service-{writers}", writers, args.seconds)
            print(
                f"{writers:>8}{ours:>14.0f}{theirs:>14.0f}{ours / theirs:>8.2f}"
                f"{served:>16.0f}{served / theirs:>8.2f}"
            )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak memory of this process: {peak:.0f} MiB")


if __name__ == "__main__":
    main()
