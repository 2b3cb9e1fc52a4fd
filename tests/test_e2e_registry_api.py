"""The registry's REST API: admins change it, auditors read it, researchers are refused."""

from __future__ import annotations

import httpx
import pytest

from enclave_harness import (
    HTTP_TIMEOUT,
    HubAPI,
    create_api_token,
    login,
    run_in_kernel,
    session_url,
)

pytestmark = pytest.mark.e2e

API = "/services/enclave-registry/api"


def _client(enclave, username: str) -> httpx.Client:
    browser, _ = login(enclave, username)
    token = create_api_token(browser, username)
    return httpx.Client(
        base_url=f"{enclave.url}{API}",
        headers={"Authorization": f"token {token}"},
        timeout=HTTP_TIMEOUT,
    )


@pytest.fixture(scope="module")
def carol(enclave) -> httpx.Client:
    return _client(enclave, "carol")


def test_an_admin_creates_a_project_adds_a_member_and_grants_a_dataset(enclave, carol):
    created = carol.post("/projects", json={"id": "api-made", "title": "Made by the API"})
    assert created.status_code == 201, created.text
    assert created.json()["created_by"] == "carol"
    member = carol.post("/projects/api-made/members", json={"username": "bob"})
    assert member.status_code == 201, member.text
    grant = carol.post("/projects/api-made/datasets", json={"dataset": "ds-imaging"})
    assert grant.status_code == 201, grant.text
    shown = carol.get("/projects/api-made").json()
    assert [m["username"] for m in shown["members"]] == ["bob"]
    assert [g["dataset"] for g in shown["datasets"]] == ["ds-imaging"]

    bob_browser, _ = login(enclave, "bob")
    assert "Made by the API" in bob_browser.get("/hub/home").text
    alice_browser, _ = login(enclave, "alice")
    assert "Made by the API" not in alice_browser.get("/hub/home").text

    bob = HubAPI(enclave, create_api_token(bob_browser, "bob"))
    assert bob.start_session("bob", "api-made").status_code in (201, 202)
    bob.wait_until_ready("bob", "api-made")
    try:
        code = "import os\nprint(sorted(os.listdir('/data')))"
        listing = run_in_kernel(session_url(enclave, "bob", "api-made"), bob.token, code)
    finally:
        bob.stop_session("bob", "api-made")
    assert listing.strip() == "['ds-imaging']"


@pytest.mark.parametrize(
    ("path", "body", "status", "named"),
    [
        ("/projects", {"id": "../x", "title": "T"}, 400, "project id '../x' is not valid"),
        ("/projects", {"id": "x", "title": ""}, 400, "a title is required"),
        ("/projects", {"id": "seeded", "title": "T", "ends": "someday"}, 400, "not a date"),
        ("/projects/api-made/members", {"username": "a/b"}, 400, "username 'a/b'"),
        ("/projects/api-made/members", {"username": "BOB"}, 409, "already a member"),
        ("/projects/api-made/datasets", {"dataset": "%2e%2e%2fx"}, 400, "dataset"),
        ("/projects/no-such/members", {"username": "bob"}, 404, "no project 'no-such'"),
    ],
)
def test_bad_requests_are_named_and_change_nothing(carol, path, body, status, named):
    before = carol.get("/projects").json()
    reply = carol.post(path, json=body)
    assert reply.status_code == status, reply.text
    assert named in reply.json()["error"]
    assert carol.get("/projects").json() == before


def test_an_auditor_reads_but_cannot_change(enclave):
    dave = _client(enclave, "dave")
    assert dave.get("/projects").status_code == 200
    refused = dave.post("/projects", json={"id": "by-auditor", "title": "No"})
    assert refused.status_code == 403
    assert "only admins may change" in refused.json()["error"]
    assert dave.delete("/projects/api-made/members/bob").status_code == 403


def test_a_researcher_cannot_use_the_registry_api_or_pages(enclave):
    alice = _client(enclave, "alice")
    assert alice.get("/projects").status_code == 403
    assert alice.post("/projects", json={"id": "by-alice", "title": "No"}).status_code == 403
    browser, _ = login(enclave, "alice")
    assert browser.get("/services/enclave-registry/").status_code == 403


def test_the_openapi_document_describes_every_route(carol):
    document = carol.get("/openapi.json").json()
    assert document["openapi"].startswith("3.")
    assert set(document["paths"]) == {
        "/projects",
        "/projects/{project}",
        "/projects/{project}/members",
        "/projects/{project}/members/{username}",
        "/projects/{project}/datasets",
        "/projects/{project}/datasets/{dataset}",
        "/applications",
        "/applications/{number}/approve",
        "/applications/{number}/reject",
    }
