"""Parts of a running deployment killed as a crash would: the proxy and the audit service come
back by themselves, a start while the identity provider is down is refused in a plain line,
sandboxes no hub record owns are removed before the hub starts again, and
when `enclave up` gives up on a part no session outlives it."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
import uuid
from pathlib import Path

import httpx
import pytest

from enclave_harness import (
    HubAPI,
    Kernel,
    RunningEnclave,
    SessionNotebook,
    create_api_token,
    environ_of,
    kill_hub_and_wait_for_the_next,
    login,
    make_site_dir,
    run_in_kernel,
    session_namespaces,
    session_server_pids,
    session_url,
    start_enclave,
    write_site_config,
)
from enclave_hub.audit.query import records
from enclave_hub.core.services import AIRLOCK
from enclave_hub.local.leftovers import RunRecord
from enclave_hub.local.supervisor import RESTART_LIMIT
from enclave_hub.sandbox import built_numbers
from enclave_hub.sandbox.cgroup import sandbox_cgroups

pytestmark = pytest.mark.e2e

BACK_WITHIN = 30.0  # seconds: a killed part is serving again within this


def _live_pid(enclave: RunningEnclave, component: str) -> int | None:
    record = RunRecord(enclave.state_dir / "run")
    return next((p.pid for p in record.processes() if p.name == component and p.alive()), None)


def _kill_and_wait_for_the_next(enclave: RunningEnclave, component: str) -> int:
    """kill -9 of a component; the pid of the one `enclave up` starts in its place."""
    old = _live_pid(enclave, component)
    assert old is not None, enclave.output()
    os.kill(old, signal.SIGKILL)
    deadline = time.monotonic() + BACK_WITHIN
    while time.monotonic() < deadline:
        pid = _live_pid(enclave, component)
        if pid not in (None, old):
            return pid
        time.sleep(0.2)
    raise AssertionError(f"the {component} was not restarted:\n{enclave.output()}")


def _wait_for_line(enclave: RunningEnclave, line: str, times: int) -> None:
    """Wait until `enclave up` has said `line` `times` times."""
    deadline = time.monotonic() + BACK_WITHIN
    while enclave.output().count(line) < times:
        assert time.monotonic() < deadline, f"not said {times} times: {line}\n{enclave.output()}"
        time.sleep(0.2)


def _session(enclave: RunningEnclave, user: str, project: str) -> tuple[HubAPI, str]:
    client, _ = login(enclave, user)
    api = HubAPI(enclave, create_api_token(client, user))
    assert api.start_session(user, project).status_code in (201, 202)
    api.wait_until_ready(user, project)
    return api, session_url(enclave, user, project)


def test_a_killed_proxy_is_restarted_and_the_session_answers_through_it_again(enclave):
    api, url = _session(enclave, "bob", "cancer-imaging")
    servers = session_server_pids(enclave, "bob", "cancer-imaging")
    killed = time.monotonic()
    _kill_and_wait_for_the_next(enclave, "proxy")
    while True:
        try:
            answer = run_in_kernel(url, api.token, "print('through the new proxy')", timeout=10)
            break
        except (httpx.HTTPError, OSError) as error:
            assert time.monotonic() - killed < BACK_WITHIN, f"no answer: {error}"
            time.sleep(0.5)
    assert answer == "through the new proxy\n"
    assert session_server_pids(enclave, "bob", "cancer-imaging") == servers
    assert "The proxy exited (status -9); restarting it." in enclave.output()
    api.stop_session("bob", "cancer-imaging")


def test_cells_are_refused_while_the_audit_service_is_down_and_recorded_once_it_is_back(enclave):
    api, url = _session(enclave, "bob", "cancer-imaging")
    kernel = Kernel(url, api.token, timeout=90)
    kernel.wait_ready()
    audit = _live_pid(enclave, "audit service")
    assert audit is not None
    # `enclave up` is paused so that it cannot restart the service while the cell waits.
    os.kill(enclave.process.pid, signal.SIGSTOP)
    try:
        os.kill(audit, signal.SIGKILL)
        with pytest.raises(AssertionError, match="could not be recorded in the audit log"):
            kernel.execute("print('unrecorded')")
    finally:
        os.kill(enclave.process.pid, signal.SIGCONT)
    marker = uuid.uuid4().hex
    assert kernel.execute(f"print('{marker}')") == f"{marker}\n"
    cells = [r.get("code", "") for r in records(enclave.state_dir / "audit")]
    assert f"print('{marker}')" in cells
    assert "print('unrecorded')" not in cells
    assert "The audit service exited (status -9); restarting it." in enclave.output()
    kernel.close()
    api.stop_session("bob", "cancer-imaging")


def test_a_killed_service_is_restarted_and_its_pages_answer_again(enclave):
    page = f"{enclave.url}{AIRLOCK.prefix}"
    assert httpx.get(page).status_code == 302  # to the hub's sign-in
    _kill_and_wait_for_the_next(enclave, "airlock service")
    _wait_for_line(enclave, "The airlock service is back.", 1)
    assert httpx.get(page).status_code == 302
    assert "The airlock service exited (status -9); restarting it." in enclave.output()


def test_a_start_while_the_identity_provider_is_down_is_refused_in_a_plain_line(enclave):
    """Every start checks its user at the identity provider first: while the provider is down
    the start is refused with 503 and a line saying why, nothing starts, and once the provider
    is back the same start succeeds (after signing in again: the development provider forgets
    the tokens it gave when it restarts)."""
    client, _ = login(enclave, "bob")
    api = HubAPI(enclave, create_api_token(client, "bob"))
    provider = _live_pid(enclave, "development OIDC provider")
    assert provider is not None
    # `enclave up` is paused so that it cannot restart the provider while the start is asked.
    os.kill(enclave.process.pid, signal.SIGSTOP)
    try:
        os.kill(provider, signal.SIGKILL)
        refused = api.start_session("bob", "cancer-imaging")
    finally:
        os.kill(enclave.process.pid, signal.SIGCONT)
    assert refused.status_code == 503, refused.text
    assert refused.json()["message"].startswith(
        "bob's identity could not be checked at the identity provider ("
    )
    assert not session_server_pids(enclave, "bob", "cancer-imaging")
    _wait_for_line(enclave, "The development OIDC provider is back.", 1)
    login(enclave, "bob")
    assert api.start_session("bob", "cancer-imaging").status_code in (201, 202)
    api.wait_until_ready("bob", "cancer-imaging")
    api.stop_session("bob", "cancer-imaging")


def _lines(*argv: str) -> list[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout.splitlines()


def _sandbox_of(enclave: RunningEnclave, user: str, project: str) -> tuple[int, str]:
    """The server pid and network namespace of a user's running session."""
    (server,) = session_server_pids(enclave, user, project)
    (namespace,) = _lines("ip", "netns", "identify", str(server))
    return server, namespace


def _assert_gone(server: int, namespace: str, workspaces: Path) -> None:
    assert not Path(f"/proc/{server}").exists()
    assert namespace not in session_namespaces()
    number = int(namespace.removeprefix("enclave-s"))
    assert f"s{number}" not in [cgroup.name for cgroup in sandbox_cgroups()]
    assert number not in built_numbers(workspaces)


def test_a_lost_hub_database_and_a_part_given_up_on_leave_no_session_behind():
    enclave = start_enclave(write_site_config(make_site_dir()))
    workspaces = enclave.site.sessions.workspace_root
    try:
        alice = SessionNotebook(enclave, "alice", "genomics-pilot")
        server, namespace = _sandbox_of(enclave, "alice", "genomics-pilot")
        token = environ_of(server)["JUPYTERHUB_API_TOKEN"]
        (enclave.state_dir / "jupyterhub.sqlite").unlink()
        kill_hub_and_wait_for_the_next(enclave)
        number = namespace.removeprefix("enclave-s")
        assert re.search(
            rf"No hub record owns sandbox {number} \(network namespace {namespace}, .*\): "
            r"removed it\.",
            enclave.output(),
        ), enclave.output()
        _assert_gone(server, namespace, workspaces)
        who = httpx.get(
            f"{enclave.site.hub_api_url}/user", headers={"Authorization": f"token {token}"}
        )
        assert who.status_code == 403, who.text
        alice.kernel.channel.close()

        # A proxy that keeps dying is given up on; the hub cannot stop sessions without it.
        SessionNotebook(enclave, "alice", "genomics-pilot")
        server, namespace = _sandbox_of(enclave, "alice", "genomics-pilot")
        number = namespace.removeprefix("enclave-s")
        for restarts in range(1, RESTART_LIMIT + 1):
            _kill_and_wait_for_the_next(enclave, "proxy")
            _wait_for_line(enclave, "The proxy is back.", restarts)
        os.kill(_live_pid(enclave, "proxy"), signal.SIGKILL)
        assert enclave.process.wait(120) == 1, enclave.output()
    finally:
        enclave.stop()
    output = enclave.output()
    assert "The proxy exited (status -9); stopping Enclave." in output
    assert "The proxy is down, so the hub cannot stop sessions." in output
    assert re.search(rf"The stopped hub left sandbox {number}\b.*: removed it\.", output), output
    _assert_gone(server, namespace, workspaces)
