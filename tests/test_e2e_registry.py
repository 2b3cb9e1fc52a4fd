"""Projects made with `enclave project`: members see them, and running sessions follow every
expiry, suspension and withdrawn grant within the reconcile interval."""

from __future__ import annotations

import subprocess
import sys
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
    run_in_kernel,
    session_server_pids,
    session_url,
    set_provider_claims,
)
from enclave_hub.audit.query import records

pytestmark = pytest.mark.e2e

USER, OTHER = "mona", "nils"
LIST_DATA = "import os\nprint(sorted(os.listdir('/data')) if os.path.isdir('/data') else [])"


def project_cli(enclave, *argv: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "enclave_hub.cli", "project", *argv]
    result = subprocess.run(
        [*command, "--config", str(enclave.base / "enclave.yaml")], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    return result


@pytest.fixture(scope="module")
def mona(enclave) -> HubAPI:
    for user in (USER, OTHER):
        set_provider_claims(enclave, user, {"preferred_username": user, "groups": ["researchers"]})
    client, _ = login(enclave, USER)
    return HubAPI(enclave, create_api_token(client, USER))


def _server_token(project: str) -> str:
    (pid,) = session_server_pids(USER, project)
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
    assert mona.start_session(USER, "short-stay").status_code in (201, 202)
    mona.wait_until_ready(USER, "short-stay")
    token = _server_token("short-stay")
    assert _token_works(enclave, token)

    _wait_until_stopped(mona, "short-stay", timeout=45)
    assert not _token_works(enclave, token)
    refused = mona.start_session(USER, "short-stay")
    assert refused.status_code >= 400
    assert "not a member" in refused.text
    (revocation,) = _revocations(enclave, "short-stay")
    assert revocation["reason"] == "the membership or the project is no longer in force"


def test_suspending_a_project_stops_its_sessions_and_refuses_new_ones(enclave, mona):
    project_cli(enclave, "create", "to-suspend", "--title", "To be suspended")
    project_cli(enclave, "add-member", "to-suspend", USER)
    assert mona.start_session(USER, "to-suspend").status_code in (201, 202)
    mona.wait_until_ready(USER, "to-suspend")
    token = _server_token("to-suspend")

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
