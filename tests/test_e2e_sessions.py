"""Login, sessions and the limits of a researcher's rights, on a real provider, hub and proxy."""

from __future__ import annotations

import html
import json
from pathlib import Path

import pytest

from enclave_harness import (
    HubAPI,
    create_api_token,
    login,
    run_in_kernel,
    session_namespaces,
    session_server_pids,
    session_url,
    set_provider_claims,
)

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def alice(enclave) -> HubAPI:
    client, landing = login(enclave, "alice")
    assert landing.status_code == 200
    return HubAPI(enclave, create_api_token(client, "alice"))


@pytest.fixture(scope="module")
def bob(enclave) -> HubAPI:
    client, _ = login(enclave, "bob")
    return HubAPI(enclave, create_api_token(client, "bob"))


def test_researcher_logs_in_and_runs_code_in_a_project_session(enclave):
    client, landing = login(enclave, "alice")
    assert landing.status_code == 200
    assert landing.url.path == "/hub/home"
    # The home page lists alice's projects and no others.
    assert "cancer-imaging" in landing.text and "genomics-pilot" in landing.text
    assert "cardiac-mri" not in landing.text

    api = HubAPI(enclave, create_api_token(client, "alice"))
    assert api.start_session("alice", "cancer-imaging").status_code in (201, 202)
    api.wait_until_ready("alice", "cancer-imaging")

    code = (
        "import json, os\n"
        "try:\n"
        f"    open({str(enclave.state_dir / 'secrets' / 'cookie_secret')!r}).read()\n"
        "    state = 'readable'\n"
        "except OSError as error:\n"
        "    state = type(error).__name__\n"
        "print(json.dumps({'answer': sum(range(10)) * 7, 'uid': os.getuid(),\n"
        "    'project': os.environ['ENCLAVE_PROJECT'], 'state_dir': state}))\n"
    )
    result = json.loads(
        run_in_kernel(session_url(enclave, "alice", "cancer-imaging"), api.token, code)
    )
    assert result["answer"] == 315
    assert result["project"] == "cancer-imaging"
    assert result["uid"] >= 200000, "sessions never run as root or as a system user"
    assert result["state_dir"] in ("PermissionError", "FileNotFoundError"), "hub state read"
    api.stop_session("alice", "cancer-imaging")


def test_spawn_page_offers_only_the_users_projects(enclave):
    client, _ = login(enclave, "alice")
    own = client.get("/hub/spawn/alice/genomics-pilot")
    assert "Single-cell genomics pilot" in own.text
    choice = client.get("/hub/spawn/alice")
    assert "cancer-imaging" in choice.text and "genomics-pilot" in choice.text
    assert "cardiac-mri" not in choice.text


def test_a_start_names_each_step_of_the_sandbox_as_it_is_done(enclave):
    """The progress a start reports (its page shows it) names the steps, in order."""
    set_provider_claims(enclave, "vera", {"preferred_username": "vera", "groups": ["researchers"]})
    client, _ = login(enclave, "vera")
    api = HubAPI(enclave, create_api_token(client, "vera"))
    assert api.start_session("vera", "trial").status_code == 202  # slower than a second
    messages, _ = _progress(api, "vera", "trial")
    api.stop_session("vera", "trial")
    steps = [
        "Membership of Trial project checked; profile default",
        "Start recorded in the audit log",
        "Building the sandbox",
        "Firewall checked: the session reaches only",
        "Starting JupyterLab in the sandbox with 0 dataset(s) mounted read-only",
    ]
    found = [next(i for i, m in enumerate(messages) if m.startswith(s)) for s in steps]
    assert found == sorted(found), messages


def test_a_session_for_someone_elses_project_is_refused(enclave, alice):
    # alice's token carries no scope for that server: the hub refuses without saying more.
    response = alice.start_session("alice", "cardiac-mri")
    assert response.status_code == 404
    assert "No access" in response.json()["message"]
    # An admin is an operator: they may not start anyone's session (test_e2e_session_boundary).
    admin, _ = login(enclave, "carol")
    by_admin = HubAPI(enclave, create_api_token(admin, "carol")).start_session(
        "alice", "cardiac-mri"
    )
    assert by_admin.status_code == 403
    servers = alice.http.get("/users/alice").json()["servers"]
    assert not servers.get("cardiac-mri", {}).get("ready")


def test_a_user_in_no_allowed_group_gets_403(enclave):
    _, landing = login(enclave, "mallory")  # not in the provider's directory: no claims
    assert landing.status_code == 403
    assert "gave no 'preferred_username'" in html.unescape(landing.text)
    set_provider_claims(enclave, "oscar", {"preferred_username": "oscar", "groups": ["visitors"]})
    _, landing = login(enclave, "oscar")
    assert landing.status_code == 403


def test_a_user_removed_from_every_allowed_group_cannot_start_a_session(enclave):
    claims = {"preferred_username": "frank", "groups": ["researchers"]}
    set_provider_claims(enclave, "frank", claims)
    client, landing = login(enclave, "frank")
    assert landing.status_code == 200
    api = HubAPI(enclave, create_api_token(client, "frank"))

    set_provider_claims(enclave, "frank", {**claims, "groups": []})

    assert api.start_session("frank", "trial").status_code == 403
    from_browser = client.post("/hub/spawn/frank/trial", data={}, headers={"Referer": ""})
    assert from_browser.status_code == 403
    assert session_server_pids(enclave, "frank", "trial") == []
    # The refresh that found frank in no allowed group also deleted his API tokens.
    assert api.http.get("/users/frank").status_code == 403


def test_a_session_that_exits_while_starting_reports_its_reason(enclave):
    set_provider_claims(
        enclave, "grace", {"preferred_username": "grace", "groups": ["researchers"]}
    )
    client, _ = login(enclave, "grace")
    api = HubAPI(enclave, create_api_token(client, "grace"))
    # A file where Jupyter keeps its runtime folder: the server dies during start-up.
    # (Sessions ignore Jupyter configuration in the home folder, so it cannot be a config.)
    share = Path(enclave.config["sessions"]["workspace_root"], "trial/home/grace/.local/share")
    share.mkdir(parents=True)
    share.parent.chmod(0o755)
    share.chmod(0o755)
    (share / "jupyter").write_text("not a folder\n")
    namespaces = session_namespaces()
    response = api.start_session("grace", "trial")
    if response.status_code == 202:  # still starting after a second: its progress tells
        messages, failed = _progress(api, "grace", "trial")
        assert failed, messages
        reason = messages[-1]
    else:
        assert response.status_code >= 400
        reason = response.text
    assert session_namespaces() == namespaces, "a failed start leaves no sandbox behind"
    assert "exited while starting (exit status 1)" in reason
    assert "NotADirectoryError" in reason


def _progress(api: HubAPI, username: str, project: str) -> tuple[list[str], bool]:
    """The messages of a start's progress, to its end; and whether it failed."""
    messages = []
    url = f"/users/{username}/servers/{project}/progress"
    with api.http.stream("GET", url, timeout=90) as events:
        for line in events.iter_lines():
            if line.startswith("data:"):
                event = json.loads(line.removeprefix("data:"))
                messages.append(event.get("message", ""))
                if event.get("ready") or event.get("failed"):
                    return messages, bool(event.get("failed"))
    return messages, False


def test_a_researchers_token_cannot_reach_other_users(enclave, alice, bob):
    assert bob.start_session("bob", "cardiac-mri").status_code in (201, 202)
    bob.wait_until_ready("bob", "cardiac-mri")
    bobs_session = session_url(enclave, "bob", "cardiac-mri")
    assert bob.http.get(f"{bobs_session}api/kernels").status_code == 200

    as_alice = alice.http
    assert as_alice.get(f"{bobs_session}api/kernels").status_code == 403
    # JupyterHub answers a token whose rights are limited to other users with 404 rather than
    # 403, the same answer as for a user who does not exist, so that existence does not leak.
    refused = as_alice.post("/users/bob/servers/cancer-imaging")
    assert refused.status_code in (403, 404)
    assert as_alice.post("/users/nobody/servers/cancer-imaging").status_code == refused.status_code
    assert "cancer-imaging" not in bob.http.get("/users/bob").json()["servers"]
    assert as_alice.get("/users").status_code == 403
    bob.stop_session("bob", "cardiac-mri")
