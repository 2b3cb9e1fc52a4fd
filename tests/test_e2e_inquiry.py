"""The data inquiry portal on a running Enclave: a researcher of no project reads the
catalogue and counts cohorts through the API (two cohorts one person apart read alike, a
small one as "fewer than 10"), every count is in the audit log, a burst past the rate limit
is refused; a person of no allowed group cannot reach it at all; an application sent through
the API is rejected by an admin through the registry's API, and its applicant reads why."""

from __future__ import annotations

from datetime import date, timedelta

import httpx
import pytest
from inquiry_data import DIABETES, DIABETES_CHILD, GLUCOSE, KEY, persons_table, write_records
from person_data import quiet

from enclave.omop.ingest import ingest_omop
from enclave_harness import create_api_token, login, set_provider_claims
from enclave_hub.audit.query import records
from enclave_hub.core.services import INQUIRY, REGISTRY

pytestmark = pytest.mark.e2e

# Local concepts (a site's own start at 2,000,000,000): no other test's records hold them.
OFFSET = 2_000_000_000
DATASET = "ds-inquiry-emr"


def _portal(enclave, user: str, groups: list[str]) -> httpx.Client:
    """`user`'s calls to the portal's API, with a token of their own."""
    set_provider_claims(enclave, user, {"preferred_username": user, "groups": groups})
    client, _ = login(enclave, user)
    token = create_api_token(client, user)
    return httpx.Client(
        base_url=f"{enclave.url}{INQUIRY.prefix}api/",
        headers={"Authorization": f"token {token}"},
        timeout=60,
    )


def test_a_researcher_of_no_project_counts_cohorts_recorded_and_rate_limited(enclave, tmp_path):
    # Every diabetic has a glucose measurement but person 17: the two cohorts differ by one.
    people = persons_table(count=60, offset=OFFSET, glucose=lambda n: n != 17)
    records_folder = write_records(tmp_path / "emr", people)
    (done,) = ingest_omop(records_folder, DATASET, enclave.site.data_root, KEY, "cdm", False, quiet)
    assert done.error is None
    portal = _portal(enclave, "ines", ["researchers"])

    catalogue = portal.get("catalogue")
    assert catalogue.status_code == 200, catalogue.text
    (ours,) = [d for d in catalogue.json()["datasets"] if d["id"] == DATASET]
    assert ours["kind"] == "omop" and ours["persons"]["text"] == "about 60"
    described = portal.get(f"datasets/{DATASET}").json()
    assert described["dictionary"]["omop"]["tables"]["person"] == 60
    assert portal.get("openapi.json").json()["paths"]["/counts"]["post"]

    diabetes = {"conditions": [DIABETES + OFFSET]}
    with_glucose = {**diabetes, "measurements": [GLUCOSE + OFFSET]}
    answers = [portal.post("counts", json={"criteria": c}) for c in (diabetes, with_glucose)]
    assert [a.status_code for a in answers] == [200, 200], [a.text for a in answers]
    first, second = (a.json() for a in answers)
    assert first["text"] == second["text"] == "about 20"  # 17 and 16 persons
    assert first["count"] == second["count"] == 20
    small = portal.post("counts", json={"criteria": {"conditions": [DIABETES_CHILD + OFFSET]}})
    assert small.json() == {**small.json(), "count": None, "text": "fewer than 10"}
    bad = portal.post("counts", json={"criteria": {"sex": "x"}})
    assert bad.status_code == 400 and "sex" in bad.json()["error"]

    asked = [
        r
        for r in records(enclave.state_dir / "audit")
        if r["action"] == "inquiry.count" and r["actor"] == "ines"
    ]
    assert [r["outcome"] for r in asked] == ["answered"] * 3
    assert asked[0]["detail"]["criteria"]["conditions"] == [DIABETES + OFFSET]
    assert [r["detail"]["shown"] for r in asked] == ["about 20", "about 20", "fewer than 10"]

    limit = enclave.site.inquiry.queries_per_minute
    burst = [portal.post("counts", json={"criteria": diabetes}) for _ in range(limit)]
    refused = [r for r in burst if r.status_code == 429]
    assert len(refused) == 3, "three were asked before the burst, within the same minute"
    assert "counts a minute" in refused[0].json()["error"]
    outcomes = [
        r["outcome"]
        for r in records(enclave.state_dir / "audit")
        if r["action"] == "inquiry.count" and r["actor"] == "ines"
    ]
    assert outcomes.count("refused: rate limit") == 3


def test_a_person_of_no_allowed_group_cannot_reach_the_portal(enclave):
    portal = _portal(enclave, "erin", ["output-checkers"])
    for path in ("catalogue", f"datasets/{DATASET}", "openapi.json"):
        answer = portal.get(path)
        assert answer.status_code == 403, (path, answer.text)
        assert DATASET not in answer.text
    refused = portal.post("counts", json={"criteria": {}})
    assert refused.status_code == 403
    browser, _ = login(enclave, "erin")
    page = browser.get(INQUIRY.prefix)
    assert page.status_code == 403 and DATASET not in page.text


def test_an_application_made_through_the_api_is_rejected_with_its_reason(enclave):
    portal = _portal(enclave, "ivan", ["researchers"])
    ends = (date.today() + timedelta(days=30)).isoformat()
    application = {
        "project_id": "ivan-study",
        "title": "A study",
        "datasets": [DATASET],
        "members": ["ines"],
        "justification": "A question the records answer.",
        "ends": ends,
    }
    refused = portal.post("applications", json={**application, "datasets": ["../etc"]})
    assert refused.status_code == 400 and "../etc" in refused.json()["error"]
    sent = portal.post("applications", json=application)
    assert sent.status_code == 201, sent.text
    number = sent.json()["id"]
    set_provider_claims(enclave, "carol", {"preferred_username": "carol", "groups": ["admins"]})
    client, _ = login(enclave, "carol")
    registry = httpx.Client(
        base_url=f"{enclave.url}{REGISTRY.prefix}api/",
        headers={"Authorization": f"token {create_api_token(client, 'carol')}"},
        timeout=60,
    )
    waiting = registry.get("applications").json()["applications"]
    assert any(a["id"] == number and a["status"] == "submitted" for a in waiting)
    no_reason = registry.post(f"applications/{number}/reject", json={})
    assert no_reason.status_code == 400 and "reason" in no_reason.json()["error"]
    rejected = registry.post(f"applications/{number}/reject", json={"reason": "Not yet."})
    assert rejected.status_code == 200 and rejected.json()["status"] == "rejected"
    (mine,) = portal.get("applications").json()["applications"]
    assert (mine["status"], mine["reason"], mine["decided_by"]) == ("rejected", "Not yet.", "carol")
    again = registry.post(f"applications/{number}/approve")
    assert again.status_code == 409 and "already rejected" in again.json()["error"]
    by_researcher = portal.post(f"{enclave.url}{REGISTRY.prefix}api/applications/{number}/approve")
    assert by_researcher.status_code == 403
