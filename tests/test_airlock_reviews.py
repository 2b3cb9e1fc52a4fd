"""The airlock's workflow on a real database (SQLite and PostgreSQL), a real store, the real
checks process and a real audit log: two independent approvals release, the requester never
reviews, a revision starts the reviews again, and what was snapshotted is what leaves."""

from __future__ import annotations

import hashlib
import io
import json

import pytest
from study_world import dataset_root, seed_study

from enclave_hub.airlock.checks import Rules
from enclave_hub.airlock.exports import (
    Airlock,
    AirlockError,
    InvalidRequest,
    Limits,
    NotAllowed,
    NotFound,
    Submission,
    Upload,
)
from enclave_hub.airlock.store import AirlockStore
from enclave_hub.audit import AuditLog
from enclave_hub.audit.query import records
from enclave_hub.core.audit_client import AuditRefused
from enclave_hub.core.registry import Registry

TABLE = b"site,n\nleeds,12\nyork,40\n"
LIMITS = Limits(
    max_files=5, max_request_size=1024**2, check_timeout=60, check_memory=4 * 1024**3,
    reviews_required=2,
)  # fmt: skip


@pytest.fixture
def world(tmp_path, database_url):
    """A project with two researchers and two output checkers, one versioned dataset."""
    data = dataset_root(tmp_path)
    log = AuditLog(tmp_path / "audit", tmp_path / "signing.key", interval=3600)
    registry = Registry(database_url, data, ["default"], log.append)
    seed_study(registry)
    store = AirlockStore(tmp_path / "airlock")
    airlock = Airlock(database_url, store, registry, Rules(), LIMITS, log.append)
    yield airlock, tmp_path / "audit"
    log.close()


def submit(airlock: Airlock, *files: tuple[str, bytes], revises=None, who="alice") -> dict:
    uploads = [Upload(name, "output", io.BytesIO(content)) for name, content in files]
    return airlock.submit(
        Submission(
            requester=who,
            project="study",
            justification="Counts of patients per site for the paper's table 1",
            uploads=uploads,
            session="run-1",
            environment={"python": "3.11", "packages": {"pandas": "2.3.3"}},
            revises=revises,
        )
    )


def actions(folder) -> list[str]:
    return [r["action"] for r in records(folder) if r["action"].startswith("airlock.")]


def test_two_independent_approvals_release_what_was_snapshotted(world):
    airlock, audit = world
    source = bytearray(TABLE)
    request = submit(airlock, ("results/by_site.csv", bytes(source)))
    assert request["status"] == "in-review"
    snapshot = request["revisions"][0]["files"][0]
    assert snapshot["sha256"] == hashlib.sha256(TABLE).hexdigest()
    source[:4] = b"XXXX"  # the file changes in the session after the request: no matter

    with pytest.raises(NotAllowed, match="no one may review their own request"):
        airlock.review("alice", request["id"], "approve")
    with pytest.raises(NotAllowed, match="bob is not an output checker"):
        airlock.review("bob", request["id"], "approve")

    once = airlock.review("erin", request["id"], "approve")
    assert once["status"] == "in-review" and once["release_record"] is None
    with pytest.raises(AirlockError, match="erin has already reviewed revision 1"):
        airlock.review("erin", request["id"], "approve")
    with pytest.raises(AirlockError, match="not released"):
        airlock.released_file("alice", request["id"], "results/by_site.csv")

    released = airlock.review("rose", request["id"], "approve", "fine")
    assert released["status"] == "released"
    path = airlock.released_file("alice", request["id"], "results/by_site.csv")
    assert path.read_bytes() == TABLE
    record = json.loads(airlock.released_file("alice", request["id"], "release.json").read_text())
    assert record["files"] == [
        {"name": "results/by_site.csv", "sha256": snapshot["sha256"], "size": len(TABLE),
         "kind": "table"}
    ]  # fmt: skip
    assert record["requester"] == "alice" and record["session"] == "run-1"
    assert [(r["reviewer"], r["decision"]) for r in record["reviews"]] == [
        ("erin", "approve"),
        ("rose", "approve"),
    ]
    assert record["checks"]["results"][0]["outcome"] == "pass"
    assert record["checks"]["rules"]["min_cell_count"] == 10
    assert record["datasets"] == {"ds1": {"version": 3, "title": "Cohort"}}
    assert record["environment"]["packages"] == {"pandas": "2.3.3"}

    with pytest.raises(NotAllowed):
        airlock.released_file("erin", request["id"], "results/by_site.csv")
    with pytest.raises(NotFound):
        airlock.released_file("alice", request["id"], "../../etc/passwd")
    assert actions(audit) == [
        "airlock.request",
        "airlock.checks",
        "airlock.approve",
        "airlock.approve",
        "airlock.release",
        "airlock.download",
        "airlock.download",
    ]


def test_a_rejection_is_revised_and_its_reviews_start_again(world):
    airlock, audit = world
    request = submit(airlock, ("t.csv", TABLE))
    airlock.review("erin", request["id"], "approve")
    with pytest.raises(InvalidRequest, match="needs a comment"):
        airlock.review("rose", request["id"], "reject")
    rejected = airlock.review("rose", request["id"], "reject", "round to the nearest 5")
    assert rejected["status"] == "rejected"
    with pytest.raises(AirlockError, match="not in review"):
        airlock.review("erin", request["id"], "approve")
    with pytest.raises(NotAllowed):
        submit(airlock, ("t.csv", b"site,n\nleeds,10\n"), revises=request["id"], who="bob")

    revised = submit(airlock, ("t.csv", b"site,n\nleeds,10\n"), revises=request["id"])
    assert revised["status"] == "in-review" and len(revised["revisions"]) == 2
    # Erin's approval was of revision 1: one new approval is not enough.
    assert airlock.review("erin", request["id"], "approve")["status"] == "in-review"
    assert airlock.review("rose", request["id"], "approve")["status"] == "released"
    record = airlock.show("alice", request["id"])["release_record"]
    assert record["revision"] == 2 and len(record["history"]) == 2
    assert "airlock.revise" in actions(audit) and "airlock.reject" in actions(audit)


def test_a_request_that_fails_its_checks_waits_for_a_revision(world):
    airlock, _ = world
    request = submit(airlock, ("t.csv", b"site,n\nleeds,12\nyork,9\n"))
    assert request["status"] == "checks-failed"
    with pytest.raises(AirlockError, match="not in review"):
        airlock.review("erin", request["id"], "approve")
    assert submit(airlock, ("t.csv", TABLE), revises=request["id"])["status"] == "in-review"


def test_flagged_files_are_approved_only_with_a_comment(world):
    airlock, _ = world
    request = submit(airlock, ("figure.png", b"\x89PNG\r\n\x1a\n" + bytes(64)))
    assert request["revisions"][0]["checks"] == "flag"
    with pytest.raises(InvalidRequest, match=r"figure.png flagged by the checks"):
        airlock.review("erin", request["id"], "approve")
    airlock.review("erin", request["id"], "approve", "a bar chart of rounded counts")


def test_bad_requests_are_refused_with_the_reason(world):
    airlock, _ = world
    with pytest.raises(InvalidRequest, match="relative path"):
        submit(airlock, ("../outside.csv", TABLE))
    with pytest.raises(InvalidRequest, match=r"sent twice: t\.csv"):
        submit(airlock, ("t.csv", TABLE), ("t.csv", TABLE))
    with pytest.raises(InvalidRequest, match="more than 1048576 bytes"):
        submit(airlock, ("big.csv", b"x" * (1024**2 + 1)))
    with pytest.raises(NotAllowed, match="erin is not a member"):
        submit(airlock, ("t.csv", TABLE), who="erin")
    with pytest.raises(NotFound):
        airlock.show("bob", 12345)


def test_others_see_only_their_own_requests_and_checkers_those_of_their_projects(world):
    airlock, _ = world
    request = submit(airlock, ("t.csv", TABLE))
    assert [r["id"] for r in airlock.visible_to("alice")] == [request["id"]]
    assert airlock.visible_to("bob") == []
    assert airlock.visible_to("erin")[0]["awaits_you"] is True
    with pytest.raises(NotFound):
        airlock.show("bob", request["id"])
    assert airlock.show("erin", request["id"])["may_review"] is True


def test_nothing_changes_when_a_step_cannot_be_audited(world, tmp_path):
    airlock, _ = world
    request = submit(airlock, ("t.csv", TABLE))
    airlock.review("erin", request["id"], "approve")

    def refuse(event: dict) -> None:
        raise AuditRefused("the audit log's disk is full", retryable=True)

    airlock.record = refuse
    with pytest.raises(AirlockError, match="cannot be audited"):
        airlock.review("rose", request["id"], "approve")
    with pytest.raises(AirlockError, match="cannot be audited"):
        submit(airlock, ("u.csv", TABLE))
    assert airlock.show("alice", request["id"])["status"] == "in-review"
    assert not (airlock.store.outbox("alice", request["id"])).exists()
    assert [r["id"] for r in airlock.visible_to("alice")] == [request["id"]]
