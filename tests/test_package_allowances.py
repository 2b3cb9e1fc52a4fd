"""Which packages a project may install, on the registry's real databases and audit log: the
site's list, allowances for every project or one, requests and their answers, each recorded;
names compared as pip compares them."""

from __future__ import annotations

import pytest

from enclave_hub.audit import AuditLog
from enclave_hub.audit.query import records
from enclave_hub.core.package_allowances import PackageAllowances, normalized_name
from enclave_hub.core.registry import NotFound, Registry, RegistryError
from enclave_hub.core.validation import InvalidInput


@pytest.fixture
def world(tmp_path, database_url):
    log = AuditLog(tmp_path / "audit", tmp_path / "signing.key", interval=3600)
    registry = Registry(database_url, tmp_path / "data", ["default"], log.append)
    for project in ("cohort", "other"):
        registry.create_project("carol", project, project.title())
    yield PackageAllowances(registry, ["NumPy"]), tmp_path / "audit"
    log.close()


def test_names_are_compared_as_pip_compares_them():
    assert normalized_name("Scikit_Learn") == "scikit-learn"
    assert normalized_name("zope.interface") == "zope-interface"
    for bad in ("", "-leading", "has space", "semi;colon", "a" * 101, "../etc"):
        with pytest.raises(InvalidInput, match="not a valid Python package name"):
            normalized_name(bad)


def test_allowances_for_every_project_and_for_one(world):
    allowances, audit = world
    assert allowances.allowed("cohort") == {"numpy"}
    allowances.allow("carol", "Lifelines", "cohort")
    allowances.allow("carol", "scipy")
    assert allowances.allowed("cohort") == {"numpy", "lifelines", "scipy"}
    assert allowances.allowed("other") == {"numpy", "scipy"}
    listed = {(a["name"], a["project"], a["allowed_by"]) for a in allowances.allowances()}
    assert listed == {
        ("numpy", None, "site configuration"),
        ("lifelines", "cohort", "carol"),
        ("scipy", None, "carol"),
    }
    allowances.disallow("carol", "lifelines", "cohort")
    assert "lifelines" not in allowances.allowed("cohort")
    with pytest.raises(NotFound, match="no allowance"):
        allowances.disallow("carol", "lifelines", "cohort")
    with pytest.raises(NotFound, match="no project 'nowhere'"):
        allowances.allow("carol", "pandas", "nowhere")
    events = [(r["action"], r["target"], r.get("project")) for r in records(audit)]
    assert ("package.allow", "package:lifelines", "cohort") in events
    assert ("package.allow", "package:scipy", None) in events
    assert ("package.disallow", "package:lifelines", "cohort") in events


def test_a_request_is_approved_for_its_project_only(world):
    allowances, audit = world
    made = allowances.request("nina", "cohort", "Lifelines", "survival curves")
    assert made["name"] == "lifelines" and made["status"] == "requested"
    with pytest.raises(RegistryError, match="requested already"):
        allowances.request("otto", "cohort", "lifelines", "me too")
    with pytest.raises(RegistryError, match="allowed already"):
        allowances.request("nina", "cohort", "numpy", "arrays")
    with pytest.raises(InvalidInput, match="reason: required"):
        allowances.request("nina", "cohort", "pandas", "  ")
    assert allowances.all()[0]["id"] == made["id"]

    decided = allowances.approve("carol", made["id"], "fine")
    assert decided["status"] == "approved" and decided["decided_by"] == "carol"
    assert "lifelines" in allowances.allowed("cohort")
    assert "lifelines" not in allowances.allowed("other")
    (mine,) = allowances.requests_of("nina", "cohort")
    assert mine["answer"] == "fine" and mine["status"] == "approved"
    with pytest.raises(RegistryError, match="already approved"):
        allowances.reject("carol", made["id"], "changed my mind")
    with pytest.raises(NotFound, match="no package request 999"):
        allowances.approve("carol", 999)
    approvals = [r for r in records(audit) if r["action"] == "package.approve"]
    assert approvals[0]["actor"] == "carol" and approvals[0]["project"] == "cohort"
    assert approvals[0]["detail"]["requester"] == "nina"


def test_a_rejection_needs_an_answer_and_allows_nothing(world):
    allowances, _ = world
    made = allowances.request("nina", "cohort", "requests", "HTTP")
    with pytest.raises(InvalidInput, match="answer"):
        allowances.reject("carol", made["id"], "")
    with pytest.raises(InvalidInput, match="at most 2000"):
        allowances.reject("carol", made["id"], "x" * 2001)
    allowances.reject("carol", made["id"], "sessions have no internet to call")
    assert "requests" not in allowances.allowed("cohort")
    (mine,) = allowances.requests_of("nina", "cohort")
    assert (mine["status"], mine["answer"]) == ("rejected", "sessions have no internet to call")
    # Asked again after a rejection: a new request.
    assert allowances.request("nina", "cohort", "requests", "for the API")["status"] == "requested"
