"""Projects made with `enclave project`: members see them, and running sessions follow every
expiry, suspension and withdrawn grant within the reconcile interval."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from enclave_harness import (
    HTTP_TIMEOUT,
    HubAPI,
    create_api_token,
    environ_of,
    login,
    project_cli,
    run_in_kernel,
    session_server_pids,
    session_url,
    set_provider_claims,
)
from enclave_hub.audit.query import records

pytestmark = pytest.mark.e2e

USER, OTHER = "mona", "nils"
LIST_DATA = "import os\nprint(sorted(os.listdir('/data')) if os.path.isdir('/data') else [])"


def _hub_view(api: HubAPI) -> tuple[set[str], set[str]]:
    """(groups, scopes) of the token holder, as the hub reports them."""
    model = api.http.get("/user").json()
    return set(model["groups"]), set(model["scopes"])


def _wait_for_view(api: HubAPI, check, timeout: float = 15) -> tuple[set[str], set[str]]:
    """Wait for the registry service to have the hub reflect a change made at the command line
    (it looks for changes every second)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        view = _hub_view(api)
        if check(*view):
            return view
        time.sleep(0.3)
    raise AssertionError(f"the hub did not reflect the registry within {timeout}s: {view}")


def _assert_no_access(reply: httpx.Response) -> None:
    """The hub's refusal for lack of scopes (404: it does not say whether the server exists)."""
    assert reply.status_code == 404, reply.text
    assert "No access" in reply.json()["message"]


def _wait_until_member(api: HubAPI, project: str) -> None:
    _wait_for_view(api, lambda groups, scopes: f"project-{project}" in groups)


@pytest.fixture(scope="module")
def mona(enclave) -> HubAPI:
    for user in (USER, OTHER):
        set_provider_claims(enclave, user, {"preferred_username": user, "groups": ["researchers"]})
    client, _ = login(enclave, USER)
    return HubAPI(enclave, create_api_token(client, USER))


def _server_token(enclave, project: str) -> str:
    (pid,) = session_server_pids(enclave, USER, project)
    return environ_of(pid)["JUPYTERHUB_API_TOKEN"]


def _wait_until_stopped(api: HubAPI, project: str, timeout: float = 30) -> float:
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        if project not in api.http.get(f"/users/{USER}").json()["servers"]:
            return time.monotonic() - began
        time.sleep(0.5)
    raise AssertionError(f"the session of {project} was not stopped within {timeout}s")


def _token_works(enclave, token: str) -> bool:
    reply = httpx.get(
        f"{enclave.url}/hub/api/user",
        headers={"Authorization": f"token {token}"},
        timeout=HTTP_TIMEOUT,
    )
    return reply.status_code == 200


def _revocations(enclave, project: str) -> list[dict]:
    log = enclave.state_dir / "audit"
    return [r for r in records(log) if r["action"] == "session.revoke" and r["project"] == project]


def test_a_cli_project_is_seen_by_its_member_with_its_dataset_and_by_no_one_else(enclave, mona):
    project_cli(enclave, "create", "cli-made", "--title", "Made at the command line")
    project_cli(enclave, "add-member", "cli-made", USER)
    project_cli(enclave, "grant", "cli-made", "ds-cardiac")
    _wait_until_member(mona, "cli-made")

    client, _ = login(enclave, USER)
    assert "Made at the command line" in client.get("/hub/home").text
    assert "Made at the command line" in client.get(f"/hub/spawn/{USER}/cli-made").text
    other, _ = login(enclave, OTHER)
    assert "Made at the command line" not in other.get("/hub/home").text
    other_api = HubAPI(enclave, create_api_token(other, OTHER))
    assert other_api.start_session(OTHER, "cli-made").status_code >= 400

    assert mona.start_session(USER, "cli-made").status_code in (201, 202)
    mona.wait_until_ready(USER, "cli-made")
    try:
        listing = run_in_kernel(session_url(enclave, USER, "cli-made"), mona.token, LIST_DATA)
    finally:
        mona.stop_session(USER, "cli-made")
    assert listing.strip() == "['ds-cardiac']"


def test_an_expired_membership_stops_the_session_revokes_its_token_and_refuses_a_start(
    enclave, mona
):
    project_cli(enclave, "create", "short-stay", "--title", "Short stay")
    expires = (datetime.now(UTC) + timedelta(seconds=15)).isoformat()
    project_cli(enclave, "add-member", "short-stay", USER, "--expires", expires)
    _wait_until_member(mona, "short-stay")
    assert mona.start_session(USER, "short-stay").status_code in (201, 202)
    mona.wait_until_ready(USER, "short-stay")
    token = _server_token(enclave, "short-stay")
    assert _token_works(enclave, token)

    _wait_until_stopped(mona, "short-stay", timeout=45)
    assert not _token_works(enclave, token)
    _wait_for_view(mona, lambda groups, scopes: "project-short-stay" not in groups)
    _assert_no_access(mona.start_session(USER, "short-stay"))
    (revocation,) = _revocations(enclave, "short-stay")
    assert revocation["reason"] == "the membership or the project is no longer in force"


def test_suspending_a_project_stops_its_sessions_and_refuses_new_ones(enclave, mona):
    project_cli(enclave, "create", "to-suspend", "--title", "To be suspended")
    project_cli(enclave, "add-member", "to-suspend", USER)
    _wait_until_member(mona, "to-suspend")
    assert mona.start_session(USER, "to-suspend").status_code in (201, 202)
    mona.wait_until_ready(USER, "to-suspend")
    token = _server_token(enclave, "to-suspend")

    project_cli(enclave, "suspend", "to-suspend")
    waited = _wait_until_stopped(mona, "to-suspend")
    assert waited < enclave.config["registry"]["reconcile_interval"] + 10
    assert not _token_works(enclave, token)
    assert mona.start_session(USER, "to-suspend").status_code >= 400


def test_a_withdrawn_grant_stops_the_session_and_is_absent_from_the_next(enclave, mona):
    project_cli(enclave, "create", "granted", "--title", "Granted data")
    project_cli(enclave, "add-member", "granted", USER)
    project_cli(enclave, "grant", "granted", "ds-imaging")
    project_cli(enclave, "grant", "granted", "ds-cardiac")
    _wait_until_member(mona, "granted")
    url = session_url(enclave, USER, "granted")
    assert mona.start_session(USER, "granted").status_code in (201, 202)
    mona.wait_until_ready(USER, "granted")
    assert run_in_kernel(url, mona.token, LIST_DATA).strip() == "['ds-cardiac', 'ds-imaging']"

    project_cli(enclave, "revoke", "granted", "ds-cardiac")
    _wait_until_stopped(mona, "granted")
    (revocation,) = _revocations(enclave, "granted")
    assert revocation["reason"] == "dataset grant withdrawn: ds-cardiac"

    assert mona.start_session(USER, "granted").status_code in (201, 202)
    mona.wait_until_ready(USER, "granted")
    try:
        assert run_in_kernel(url, mona.token, LIST_DATA).strip() == "['ds-imaging']"
    finally:
        mona.stop_session(USER, "granted")


def test_a_membership_is_a_hub_group_and_a_role_reaching_only_that_projects_session(enclave, mona):
    server_scope = f"access:servers!server={USER}/reflected"
    project_cli(enclave, "create", "reflected", "--title", "Reflected")
    project_cli(enclave, "add-member", "reflected", USER)
    # No new login: the registry service has the hub reflect the change.
    groups, scopes = _wait_for_view(mona, lambda groups, scopes: server_scope in scopes)
    assert "project-reflected" in groups
    assert f"servers!server={USER}/reflected" in scopes
    blanket = {s for s in scopes if s.split("!")[0] in ("servers", "access:servers")}
    assert all("!server=" in s for s in blanket), f"a scope reaches every server: {blanket}"
    assert not {s for s in scopes if s.startswith("users:shares")}, "sessions cannot be shared"

    other, _ = login(enclave, OTHER)
    other_groups, other_scopes = _hub_view(HubAPI(enclave, create_api_token(other, OTHER)))
    assert "project-reflected" not in other_groups
    assert not {s for s in other_scopes if s.endswith("/reflected")}
    shared = mona.http.post(f"/shares/{USER}/reflected", json={"user": OTHER})
    assert shared.status_code == 403, shared.text

    project_cli(enclave, "remove-member", "reflected", USER)
    groups, scopes = _wait_for_view(mona, lambda groups, scopes: server_scope not in scopes)
    assert "project-reflected" not in groups
    _assert_no_access(mona.start_session(USER, "reflected"))
