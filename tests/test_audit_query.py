"""`enclave audit query`: the auditor's filters over a real log."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from enclave_hub.audit import AuditLog

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
