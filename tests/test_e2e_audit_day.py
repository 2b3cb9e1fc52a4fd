"""A scripted day under audit: each step yields exactly the records expected, rightly attributed."""

from __future__ import annotations

import time

import httpx
import pytest

from enclave_harness import (
    HTTP_TIMEOUT,
    HubAPI,
    Kernel,
    create_api_token,
    kill_hub_and_wait_for_the_next,
    login,
    session_url,
    set_provider_claims,
)
from enclave_hub.audit.query import records

pytestmark = pytest.mark.e2e

USER, PROJECT = "lena", "audit-day"
BLOCKED_TARGET = ("192.0.2.44", 8443)  # TEST-NET-1: not on the allow-list


def _records_of(enclave, since: float) -> list[dict]:
    log = enclave.state_dir / "audit"
    return [r for r in records(log) if r.get("actor") == USER and r["time"] >= since]


def _wait_for(enclave, since: float, action: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(r["action"] == action for r in _records_of(enclave, since)):
            return
        time.sleep(0.5)
    raise AssertionError(f"no {action} record within {timeout}s")


def _blocked_reports_merged(found: list[dict]) -> list[dict]:
    """One record per blocked destination: the spawner reports new packets on each poll."""
    merged: list[dict] = []
    for record in found:
        earlier = next(
            (
                r
                for r in merged
                if r["action"] == "egress.blocked" == record["action"]
                and r["target"] == record["target"]
            ),
            None,
        )
        if earlier is None:
            merged.append(dict(record))
        else:
            earlier["count"] += record["count"]
    return merged


def test_a_scripted_day_yields_exactly_the_expected_records(enclave):
    since = time.time()

    # A failed login (not yet in an allowed group), then a good one.
    set_provider_claims(enclave, USER, {"preferred_username": USER, "groups": ["visitors"]})
    _, refused = login(enclave, USER)
    assert refused.status_code == 403
    set_provider_claims(enclave, USER, {"preferred_username": USER, "groups": ["researchers"]})
    client, landing = login(enclave, USER)
    assert landing.status_code == 200

    token = create_api_token(client, USER)
    api = HubAPI(enclave, token)
    assert api.start_session(USER, PROJECT).status_code in (201, 202)
    api.wait_until_ready(USER, PROJECT)
    url = session_url(enclave, USER, PROJECT)

    kernel = Kernel(url, token)
    try:
        kernel.wait_ready()
        assert kernel.execute("answer = 6 * 7\nprint(answer)") == "42\n"
        attempt = (
            "import socket\n"
            "try:\n"
            f"    socket.create_connection({BLOCKED_TARGET!r}, timeout=3)\n"
            "except OSError as error:\n"
            "    print(type(error).__name__)"
        )
        assert kernel.execute(attempt).strip() in ("ConnectionRefusedError", "TimeoutError")
        saved = httpx.put(
            f"{url}api/contents/results.txt",
            headers=kernel.headers,
            json={"type": "file", "format": "text", "content": "n = 42\n"},
            timeout=HTTP_TIMEOUT,
        )
        assert saved.status_code in (200, 201), saved.text
        _wait_for(enclave, since, "egress.blocked")

        # The hub crashes and comes back: the session goes on, with no end recorded.
        kill_hub_and_wait_for_the_next(enclave)
        assert kernel.execute("print(answer + 1)") == "43\n"
    finally:
        kernel.close()
    api.stop_session(USER, PROJECT)
    client.get("/hub/logout")
    _wait_for(enclave, since, "logout")

    found = _blocked_reports_merged(_records_of(enclave, since))
    session = next(r["session"] for r in found if r["action"] == "session.start")
    cells = [r["code"] for r in found if r["action"] == "cell.execute"]
    assert cells == ["answer = 6 * 7\nprint(answer)", cells[1], "print(answer + 1)"]
    assert "socket.create_connection" in cells[1]

    summary = [(r["action"], r.get("target"), r.get("outcome")) for r in found]
    kernel_id = kernel.id
    expected = [
        ("login.failed", "hub", "denied"),
        ("identity.bind", f"user {USER}", "ok"),  # the first sign-in binds the name
        ("login.ok", "hub", "ok"),
        ("token.create", summary[3][1], "ok"),
        ("session.start", f"{USER}/{PROJECT}", "ok"),
        ("dataset.mount", "/data/ds-imaging", "read-only"),
        ("kernel.start", kernel_id, "ok"),
        ("cell.execute", kernel_id, "ok"),
        ("cell.execute", kernel_id, "ok"),
        ("file.save", "results.txt", "ok"),
        ("egress.blocked", f"{BLOCKED_TARGET[0]} {BLOCKED_TARGET[1]}", "blocked"),
        ("cell.execute", kernel_id, "ok"),
        ("kernel.shutdown", kernel_id, "ok"),
        ("session.stop", f"{USER}/{PROJECT}", "stopped"),
        ("logout", "hub", "ok"),
    ]
    # The firewall is read on the spawner's poll, so the blocked attempt may come later.
    assert sorted(summary, key=str) == sorted(expected, key=str), summary
    blocked, saved = expected[10], expected[9]
    assert (blocked[0], saved[0]) == ("egress.blocked", "file.save")
    assert summary.index(blocked) > summary.index(saved)
    in_order = [item for item in summary if item != blocked]
    assert in_order == [item for item in expected if item != blocked], summary

    # Everything of the session carries its project and its run; session ends: exactly one.
    for record in found:
        if record["action"] in (
            "login.failed",
            "identity.bind",
            "login.ok",
            "token.create",
            "logout",
        ):
            assert "session" not in record, record
        else:
            assert (record["project"], record["session"]) == (PROJECT, session), record
    assert [r["action"] for r in found].count("session.stop") == 1
    assert "not in a group allowed" in found[0]["reason"]
    # What the session sent came from the session's own address; what the hub saw, from outside.
    session_sent = [r for r in found if r["action"].startswith(("cell.", "kernel.", "file."))]
    assert all(r["source"].startswith("169.254.") for r in session_sent)
    assert next(r for r in found if r["action"] == "login.ok")["source"] == "127.0.0.1"
