"""Applications for access, on the registry's real database and audit log: a researcher's
application is checked field by field; approving it opens the project with its members and
grants ending on the requested day, in one recorded step; a rejection carries its reason; a
decided application cannot be decided again."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from enclave_hub.audit import AuditLog
from enclave_hub.audit.query import records
from enclave_hub.core.applications import Applications
from enclave_hub.core.registry import NotFound, Registry, RegistryError
from enclave_hub.core.validation import InvalidInput

ENDS = (date.today() + timedelta(days=90)).isoformat()


@pytest.fixture
def world(tmp_path, database_url):
    data = tmp_path / "data"
    for dataset in ("ds-emr", "ds-ct"):
        (data / dataset).mkdir(parents=True)
    log = AuditLog(tmp_path / "audit", tmp_path / "signing.key", interval=3600)
    registry = Registry(database_url, data, ["default"], log.append)
    yield Applications(registry), registry, tmp_path / "audit"
    log.close()


def _apply(applications, **changes):
    fields = {
        "applicant": "nina",
        "project_id": "diabetes-ct",
        "title": "Diabetes and CT findings",
        "datasets": ["ds-emr", "ds-ct"],
        "members": ["otto", "nina"],
        "justification": "Whether CT findings differ with type 2 diabetes.",
        "ends": ENDS,
    }
    return applications.submit(**{**fields, **changes})


def test_an_approved_application_opens_the_project_in_one_recorded_step(world):
    applications, registry, audit = world
    submitted = _apply(applications)
    assert submitted["status"] == "submitted" and submitted["members"] == ["otto"]
    assert [a["id"] for a in applications.of("nina")] == [submitted["id"]]
    assert applications.of("otto") == []

    approved = applications.approve("carol", submitted["id"])
    assert approved["status"] == "approved" and approved["decided_by"] == "carol"
    project = registry.show("diabetes-ct")
    assert project["ends"] == ENDS and project["created_by"] == "carol"
    assert {m["username"]: m["role"] for m in project["members"]} == {
        "nina": "researcher",
        "otto": "researcher",
    }
    assert {g["dataset"] for g in project["datasets"]} == {"ds-emr", "ds-ct"}
    assert all(g["expires"].startswith(ENDS) for g in project["datasets"])
    assert [p.id for p in registry.projects_of("nina")] == ["diabetes-ct"]
    actions = [(r["action"], r["actor"]) for r in records(audit)]
    assert actions == [("application.submit", "nina"), ("application.approve", "carol")]
    with pytest.raises(RegistryError, match="already approved"):
        applications.reject("carol", submitted["id"], "too late")


def test_a_rejection_carries_its_reason_and_opens_nothing(world):
    applications, registry, audit = world
    submitted = _apply(applications)
    with pytest.raises(InvalidInput, match="reason"):
        applications.reject("carol", submitted["id"], " ")
    rejected = applications.reject("carol", submitted["id"], "The CT dataset is not released yet.")
    assert rejected["status"] == "rejected"
    assert applications.of("nina")[0]["reason"] == "The CT dataset is not released yet."
    assert registry.list_projects() == []
    assert [r["action"] for r in records(audit)][-1] == "application.reject"
    with pytest.raises(NotFound, match="no application 999"):
        applications.approve("carol", 999)


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"project_id": "Bad Id"}, "project id 'Bad Id'"),
        ({"datasets": []}, "datasets: choose at least one"),
        ({"datasets": ["ds-none"]}, "ds-none"),
        ({"members": ["not a name!"]}, "not a name!"),
        ({"justification": ""}, "justification: required"),
        ({"ends": date.today().isoformat()}, "end date: a day after today"),
        ({"ends": "2026-02-30"}, "end date"),
        ({"title": " "}, "a title is required"),
    ],
)
def test_a_bad_field_is_refused_by_name_and_nothing_is_recorded(world, change, says):
    applications, _, audit = world
    with pytest.raises(InvalidInput, match=says):
        _apply(applications, **change)
    assert applications.all() == []
    assert list(records(audit)) == []


def test_a_project_id_taken_or_applied_for_is_refused(world):
    applications, registry, _ = world
    registry.create_project("carol", "taken", "A project")
    with pytest.raises(RegistryError, match="'taken' is taken"):
        _apply(applications, project_id="taken")
    _apply(applications)
    with pytest.raises(RegistryError, match="'diabetes-ct' is taken"):
        _apply(applications, applicant="otto")
