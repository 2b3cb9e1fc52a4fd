"""A session cannot forge events for another user, read the audit log, or reach its key."""

from __future__ import annotations

import json

import pytest

from enclave_harness import HubAPI, create_api_token, login, run_in_kernel, session_url
from enclave_hub.audit.query import records

pytestmark = pytest.mark.e2e

ATTACKS = """
import json, os, urllib.error, urllib.request
base = os.environ["ENCLAVE_AUDIT_URL"]
events = base + os.environ["ENCLAVE_AUDIT_EVENTS_PATH"]
token = os.environ["JUPYTERHUB_API_TOKEN"]

def call(url, body=None, token=token):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url, data=data, method="POST" if body else "GET",
        headers={"Authorization": f"token {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return [reply.status, reply.read().decode()]
    except urllib.error.HTTPError as error:
        return [error.code, error.read().decode()]

def try_read(path):
    try:
        return os.listdir(path) if os.path.isdir(path) else open(path, "rb").read(16).hex()
    except OSError as error:
        return type(error).__name__

results = {
    "forged": call(events, {"action": "cell.execute", "actor": "bob", "project": "cardiac-mri",
                            "session": "bobs-session", "source": "10.1.2.3", "code": "FORGED"}),
    "platform_action": call(events, {"action": "login.ok", "actor": "bob"}),
    "stamped_field": call(events, {"action": "cell.execute", "seq": 0, "code": "x"}),
    "no_token": call(events, {"action": "cell.execute", "code": "x"}, token=""),
    "guessed_token": call(events, {"action": "cell.execute", "code": "x"}, token="0" * 64),
    "console": call(base + "/services/enclave-audit/api/records?user=bob"),
    "log": try_read(LOG),
    "key": try_read(KEY),
    "ingest_token": try_read(INGEST),
}
print(json.dumps(results))
"""


def test_a_session_cannot_forge_read_or_sign_the_log(enclave):
    client, _ = login(enclave, "alice")
    token = create_api_token(client, "alice")
    api = HubAPI(enclave, token)
    assert api.start_session("alice", "genomics-pilot").status_code in (201, 202)
    api.wait_until_ready("alice", "genomics-pilot")
    state = enclave.state_dir
    code = ATTACKS.replace("LOG", repr(str(state / "audit"))).replace(
        "KEY", repr(str(state / "audit-key" / "signing.key"))
    )
    code = code.replace("INGEST", repr(str(state / "secrets" / "audit_ingest_token")))
    try:
        output = run_in_kernel(session_url(enclave, "alice", "genomics-pilot"), token, code)
    finally:
        api.stop_session("alice", "genomics-pilot")
    results = json.loads(output)

    # The forged event is recorded as what it is: alice's, from alice's session and address.
    status, body = results["forged"]
    assert status == 201, body
    seq = json.loads(body)["seq"]
    forged = next(r for r in records(state / "audit") if r["seq"] == seq)
    start = [
        r
        for r in records(state / "audit")
        if r["action"] == "session.start"
        and (r["actor"], r["project"]) == ("alice", "genomics-pilot")
        and r["seq"] < seq
    ][-1]
    assert forged["code"] == "FORGED"
    assert (forged["actor"], forged["project"]) == ("alice", "genomics-pilot")
    assert forged["session"] == start["session"] != "bobs-session"
    assert forged["source"].startswith("169.254.") and forged["source"] != "10.1.2.3"

    assert results["platform_action"][0] == 400
    assert "may not record 'login.ok'" in results["platform_action"][1]
    assert results["stamped_field"][0] == 400
    assert results["no_token"][0] == 403
    assert results["guessed_token"][0] == 403
    assert results["console"][0] == 403
    # The log, the signing key and the hub's ingest token are not in the session's world.
    for name in ("log", "key", "ingest_token"):
        assert results[name] in ("FileNotFoundError", "PermissionError"), (name, results[name])
