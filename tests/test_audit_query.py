"""`enclave audit query`: the auditor's filters over a real log."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from enclave_hub.audit import AuditLog
from enclave_hub.audit.index import LogIndex
from enclave_hub.audit.query import Filters, records

ENCLAVE = Path(sys.prefix, "bin", "enclave")


def _at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


@pytest.fixture
def log(tmp_path) -> Path:
    folder = tmp_path / "audit"
    audit = AuditLog(folder, tmp_path / "signing.key", interval=3600)
    events = [
        ("alice", "login", None, None, "2026-11-02T09:00:00"),
        ("alice", "dataset.mount", "cancer-imaging", "ds-imaging", "2026-11-02T09:01:00"),
        ("bob", "dataset.mount", "cardiac-mri", "ds-cardiac", "2026-11-02T10:00:00"),
        ("bob", "dataset.mount", "cancer-imaging", "ds-imaging", "2026-11-03T08:00:00"),
        ("alice", "session.stop", "cancer-imaging", None, "2026-11-03T18:00:00"),
    ]
    for actor, action, project, dataset, moment in events:
        event = {"actor": actor, "action": action, "time": _at(moment)}
        event |= {"project": project} if project else {}
        event |= {"dataset": dataset} if dataset else {}
        audit.append(event)
    audit.close()
    return folder


def _query(log: Path, *filters: str) -> list[dict]:
    result = subprocess.run(
        [str(ENCLAVE), "audit", "query", "--log", str(log), *filters],
        capture_output=True,
        text=True,
        check=True,
    )
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_who_read_a_dataset_between_two_times(log):
    found = _query(
        log, "--dataset", "ds-imaging", "--since", "2026-11-02", "--until", "2026-11-03T12:00:00"
    )
    assert [(r["actor"], r["seq"]) for r in found] == [("alice", 1), ("bob", 3)]


def test_filters_by_user_project_and_type_family(log):
    assert [r["seq"] for r in _query(log, "--user", "alice")] == [0, 1, 4]
    assert [r["seq"] for r in _query(log, "--project", "cancer-imaging")] == [1, 3, 4]
    assert [r["seq"] for r in _query(log, "--type", "dataset")] == [1, 2, 3]
    assert [r["seq"] for r in _query(log, "--type", "session.stop")] == [4]
    assert _query(log, "--type", "data") == [], "a type matches whole words only"


def test_a_bad_time_is_named(log):
    result = subprocess.run(
        [str(ENCLAVE), "audit", "query", "--log", str(log), "--since", "last tuesday"],
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0
    assert "'last tuesday' is not a date or time" in result.stderr


def test_the_consoles_index_finds_what_a_full_scan_finds(tmp_path):
    """The index against the plain filter over every record, on a varied log."""
    folder = tmp_path / "varied"
    audit = AuditLog(folder, tmp_path / "varied.key", interval=3600)
    rng = random.Random(7)
    actions = ["login.ok", "login.failed", "session.start", "cell.execute", "file.save", "logout"]
    for n in range(3000):
        event = {
            "actor": f"u{rng.randrange(12)}",
            "action": rng.choice(actions),
            "time": 1000.0 + n,
        }
        if rng.random() < 0.7:
            event["project"] = f"p{rng.randrange(4)}"
        if rng.random() < 0.2:
            event["dataset"] = f"d{rng.randrange(3)}"
        if rng.random() < 0.5:
            event["session"] = f"s{rng.randrange(30)}"
        audit.append(event)
    index = LogIndex(audit.store.read)
    index.add_all(records(folder))
    everything = list(records(folder))
    asks = [
        (Filters(), None),
        (Filters(user="u3"), None),
        (Filters(user="u3", since=1500.0, until=2500.0), None),
        (Filters(project="p1", type="login"), None),
        (Filters(dataset="d2", user="u0"), None),
        (Filters(type="cell.execute", since=2900.0), None),
        (Filters(user="u5"), "s7"),
        (Filters(user="nobody"), None),
        (Filters(type="session"), None),
    ]
    for filters, session in asks:
        expected = [
            r
            for r in everything
            if filters.match(r) and (session is None or r.get("session") == session)
        ]
        assert index.search(filters, session, limit=50) == expected[::-1][:50], filters
        # The console's pages: the next page starts below the last record shown.
        first = index.search(filters, session, limit=50)
        if first:
            following = index.search(filters, session, limit=50, before=first[-1]["seq"])
            assert following == expected[::-1][50:100], filters
    assert index.values("dataset") == ["d0", "d1", "d2"]
    # A record stamped earlier than the one before it (a clock set back): still found.
    audit.append({"actor": "u3", "action": "login.ok", "time": 1700.0})
    index.add_all(list(records(folder))[-1:])
    late = Filters(user="u3", since=1690.0, until=1710.0)
    expected = [r for r in records(folder) if late.match(r)][::-1]
    assert len(expected) >= 1 and index.search(late) == expected
    audit.close()
