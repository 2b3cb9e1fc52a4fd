"""Attacks on the boundary of a research session, run against a real `enclave up`: who may reach
a session, and what leaves it."""

from __future__ import annotations

import errno
import hashlib
import html
import json
import time

import httpx
import pytest
import websocket

from enclave_harness import (
    REFRESH_AGE,
    HubAPI,
    Kernel,
    create_api_token,
    login,
    run_in_kernel,
    session_server_pids,
    session_url,
    set_provider_claims,
)
from enclave_hub.audit.query import records

pytestmark = pytest.mark.e2e

OWNER, PROJECT = "alice", "cancer-imaging"
# Every way into a session's server: its pages, files, kernels and terminals.
SESSION_ROUTES = [
    ("GET", "lab"),
    ("GET", "api/contents"),
    ("GET", "api/kernels"),
    ("POST", "api/kernels"),
    ("GET", "api/sessions"),
    ("GET", "api/terminals"),
    ("POST", "api/terminals"),
]


def wait_for_record(enclave, since: float, timeout: float = 30, **fields) -> dict:
    """The first audit record since `since` with these fields, waiting for it to be written."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for record in records(enclave.state_dir / "audit"):
            if record["time"] >= since and all(record.get(k) == v for k, v in fields.items()):
                return record
        time.sleep(0.5)
    raise AssertionError(f"no audit record {fields} within {timeout}s")


@pytest.fixture(scope="module")
def owner(enclave) -> HubAPI:
    client, _ = login(enclave, OWNER)
    api = HubAPI(enclave, create_api_token(client, OWNER))
    assert api.start_session(OWNER, PROJECT).status_code in (201, 202)
    api.wait_until_ready(OWNER, PROJECT)
    yield api
    if PROJECT in api.http.get(f"/users/{OWNER}").json()["servers"]:
        api.stop_session(OWNER, PROJECT)


@pytest.mark.parametrize("intruder", ["carol", "dave"])  # an admin, an auditor
def test_admins_and_auditors_reach_no_session_with_their_cookies_or_tokens(
    enclave, owner, intruder
):
    browser, _ = login(enclave, intruder)
    token = create_api_token(browser, intruder)
    url = session_url(enclave, OWNER, PROJECT)
    for method, path in SESSION_ROUTES:
        by_token = httpx.request(
            method, url + path, headers={"Authorization": f"token {token}"}, timeout=30
        )
        assert by_token.status_code in (401, 403), (intruder, method, path, by_token.text[:200])
        by_cookie = browser.request(method, url + path, follow_redirects=True)
        assert by_cookie.status_code in (401, 403), (intruder, method, path, by_cookie.url)
        assert "jupyter-config-data" not in by_cookie.text
    hub = HubAPI(enclave, token)
    # Nor may they start a session as its owner, or make themselves a token of the owner's.
    assert hub.start_session(OWNER, "genomics-pilot").status_code == 403
    assert hub.http.post(f"/users/{OWNER}/tokens", json={}).status_code == 403
    assert hub.http.get(f"/users/{OWNER}/tokens").status_code in (403, 404)
    assert owner.wait_until_ready(OWNER, PROJECT)["ready"]


def test_an_admin_stops_a_session_under_their_own_name(enclave, owner):
    browser, _ = login(enclave, "carol")
    operator = HubAPI(enclave, create_api_token(browser, "carol"))
    since = time.time()
    assert operator.http.delete(f"/users/{OWNER}/servers/{PROJECT}").status_code in (202, 204)
    request = wait_for_record(enclave, since, action="session.stop.request")
    assert (request["actor"], request["target"]) == ("carol", f"{OWNER}/{PROJECT}")
    stop = wait_for_record(enclave, since, action="session.stop", actor=OWNER)
    assert stop["reason"] == "stopped by carol"
    assert stop["seq"] > request["seq"]
    assert owner.start_session(OWNER, PROJECT).status_code in (201, 202)  # for the next tests
    owner.wait_until_ready(OWNER, PROJECT)


def test_a_flood_of_failed_logins_with_forged_addresses_is_recorded_from_its_real_peer(enclave):
    peer = "127.0.0.9"  # a loopback address of its own, so other tests' logins are not counted
    since = time.time()
    started = time.monotonic()
    flood = httpx.Client(transport=httpx.HTTPTransport(local_address=peer), timeout=30)
    with flood:
        for n in range(500):
            forged = f"198.51.{n // 250}.{n % 250}"
            refused = flood.get(
                f"{enclave.url}/hub/oauth_callback",
                params={"code": f"forged-{n}", "state": f"forged-{n}"},
                headers={"X-Real-Ip": forged, "X-Forwarded-For": f"203.0.113.{n % 250}, {forged}"},
            )
            assert refused.status_code >= 400
    # The limit is 5 a minute in fixed windows: a flood that began late in one window records
    # up to 5 in each window it reached.
    windows = int((time.monotonic() - started) // 60) + 2
    time.sleep(2)  # the last refusals reach the audit service
    failed = [
        r
        for r in records(enclave.state_dir / "audit")
        if r["time"] >= since and r["action"] == "login.failed"
    ]
    assert failed, "failed logins are recorded"
    assert {r["source"] for r in failed} == {peer}
    assert len(failed) <= 5 * windows, "a flood from one address adds a bounded number of records"


def test_a_second_subject_claiming_a_taken_name_is_refused(enclave):
    login(enclave, OWNER)  # alice's own subject holds her name
    since = time.time()
    twin = {"preferred_username": OWNER, "groups": ["researchers"]}
    set_provider_claims(enclave, "alice-twin", twin)
    _, landing = login(enclave, "alice-twin")
    assert landing.status_code == 403
    assert "belongs to another person" in html.unescape(landing.text)
    refused = wait_for_record(enclave, since, action="login.failed", actor=OWNER)
    assert "subject 'alice-twin' may not sign in with it" in refused["reason"]
    assert not [
        r
        for r in records(enclave.state_dir / "audit")
        if r["time"] >= since and r["action"] == "login.ok"
    ]


def test_a_person_removed_from_every_allowed_group_loses_sessions_and_tokens(enclave):
    user, project = "sam", "boundary"
    set_provider_claims(enclave, user, {"preferred_username": user, "groups": ["researchers"]})
    browser, _ = login(enclave, user)
    api = HubAPI(enclave, create_api_token(browser, user))
    assert api.start_session(user, project).status_code in (201, 202)
    api.wait_until_ready(user, project)
    since = time.time()
    set_provider_claims(enclave, user, {"preferred_username": user, "groups": []})
    # The first request of theirs after the refresh age asks the provider again.
    deadline = time.monotonic() + REFRESH_AGE + 30
    while api.http.get("/user").status_code == 200:
        assert time.monotonic() < deadline, "the token still works after the refresh age"
        time.sleep(1)
    withdrawn = wait_for_record(enclave, since, action="access.withdrawn", actor=user)
    assert withdrawn["detail"]["sessions"] == [project]
    assert "removed at the identity provider" in withdrawn["reason"]
    stopped = wait_for_record(enclave, since, action="session.stop", actor=user)
    assert stopped["reason"] == withdrawn["reason"]
    assert session_server_pids(enclave, user, project) == []
    # Their browser reaches the hub's pages only, which ask them to sign in again.
    assert browser.get(f"/user/{user}/{project}/api/status").url.path.startswith("/hub/")


# -- what leaves through the session's routes --------------------------------------------------

MAKE_FILES = """
import hashlib, json, os
os.makedirs("boundary", exist_ok=True)
with open("boundary/big.bin", "wb") as f:
    f.write(os.urandom(50 * 1024 * 1024))
with open("boundary/big.csv", "w") as f:
    f.write("id,value\\n" + "".join(f"{n},{n * n}\\n" for n in range(600_000)))
small = "id,value\\n1,1\\n2,4\\n"
with open("boundary/small.csv", "w") as f:
    f.write(small)
notebook = {"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
with open("boundary/analysis.ipynb", "w") as f:
    json.dump(notebook, f)
print(json.dumps({"small": hashlib.sha256(small.encode()).hexdigest(),
                  "big_csv": os.path.getsize("boundary/big.csv")}))
"""


def test_files_reach_the_browser_only_to_be_shown_and_each_read_is_recorded(enclave, owner):
    url = session_url(enclave, OWNER, PROJECT)
    made = json.loads(run_in_kernel(url, owner.token, MAKE_FILES))
    assert made["big_csv"] > 5 * 1024 * 1024
    browser, _ = login(enclave, OWNER)
    assert browser.get(url + "lab").status_code == 200  # signed in to the session, as JupyterLab
    since = time.time()
    for name in ("big.bin", "big.csv"):
        for query in ("", "?content=1", "?content=1&format=base64", "?type=file&format=text"):
            refused = browser.get(f"{url}api/contents/boundary/{name}{query}")
            assert refused.status_code == 403, (name, query, refused.status_code)
            assert "airlock" in refused.json()["message"]
        for route in ("files", "view", "nbconvert/html", "nbconvert/script"):
            assert browser.get(f"{url}{route}/boundary/{name}").status_code == 403, route
    # A copy inside the session is the server's own read: allowed, and the copy is as closed.
    copied = httpx.post(
        f"{url}api/contents/boundary",
        headers={"Authorization": f"token {owner.token}"},
        json={"copy_from": "boundary/big.bin"},
        timeout=60,
    )
    assert copied.status_code == 201, copied.text
    assert browser.get(f"{url}api/contents/{copied.json()['path']}").status_code == 403
    listing = browser.get(f"{url}api/contents/boundary")
    assert listing.status_code == 200, "listings still show every file"
    assert {f["name"] for f in listing.json()["content"]} >= {"big.bin", "small.csv"}
    small = browser.get(f"{url}api/contents/boundary/small.csv?content=1")
    assert small.status_code == 200 and small.json()["content"] == "id,value\n1,1\n2,4\n"
    notebook = browser.get(f"{url}api/contents/boundary/analysis.ipynb?content=1")
    assert notebook.status_code == 200 and notebook.json()["type"] == "notebook"
    read = wait_for_record(enclave, since, action="file.read", target="boundary/small.csv")
    assert read["detail"] == {"size": len("id,value\n1,1\n2,4\n"), "sha256": made["small"]}
    assert (read["actor"], read["project"]) == (OWNER, PROJECT)
    wait_for_record(enclave, since, action="file.read", target="boundary/analysis.ipynb")
    reads = [
        r["target"]
        for r in records(enclave.state_dir / "audit")
        if r["time"] >= since and r["action"] == "file.read"
    ]
    assert "boundary/big.bin" not in reads and "boundary/big.csv" not in reads


def test_a_saved_code_file_is_recorded_with_what_it_holds(enclave, owner):
    url = session_url(enclave, OWNER, PROJECT)
    since = time.time()
    code = "import os\nprint(sorted(os.listdir('/data')))\n"
    saved = httpx.put(
        f"{url}api/contents/boundary/analysis.py",
        headers={"Authorization": f"token {owner.token}"},
        json={"type": "file", "format": "text", "content": code},
        timeout=30,
    )
    assert saved.status_code in (200, 201), saved.text
    record = wait_for_record(enclave, since, action="file.save", target="boundary/analysis.py")
    assert record["code"] == code
    assert record["detail"]["sha256"] == hashlib.sha256(code.encode()).hexdigest()


def test_a_terminal_line_is_recorded_before_its_output_appears(enclave, owner):
    url = session_url(enclave, OWNER, PROJECT)
    headers = {"Authorization": f"token {owner.token}"}
    made = httpx.post(f"{url}api/terminals", headers=headers, timeout=30)
    assert made.status_code == 200, made.text
    name = made.json()["name"]
    terminal = websocket.create_connection(
        url.replace("http://", "ws://") + f"terminals/websocket/{name}",
        header=[f"Authorization: token {owner.token}"],
        timeout=30,
    )
    try:
        since = time.time()
        line = "echo enclave-$((6 * 7))\r"
        terminal.send(json.dumps(["stdin", line]))
        output = ""
        while "enclave-42" not in output:
            kind, *data = json.loads(terminal.recv())
            output += data[0] if kind == "stdout" else ""
        # The output is here: the line was in the log before the shell got it.
        found = [
            r
            for r in records(enclave.state_dir / "audit")
            if r["time"] >= since and r["action"] == "terminal.input"
        ]
        assert [r["code"] for r in found] == [line]
        assert (found[0]["actor"], found[0]["project"]) == (OWNER, PROJECT)
        assert found[0]["session"]
    finally:
        terminal.close()
        httpx.delete(f"{url}api/terminals/{name}", headers=headers, timeout=30)


def test_the_debugger_evaluates_nothing(enclave, owner):
    url = session_url(enclave, OWNER, PROJECT)
    kernel = Kernel(url, owner.token)
    try:
        kernel.wait_ready()
        since = time.time()
        evaluate = {
            "seq": 1,
            "type": "request",
            "command": "evaluate",
            "arguments": {"expression": "open('/etc/hostname').read()"},
        }
        kernel.request("debug_request", evaluate, channel="control")
        refused = wait_for_record(enclave, since, action="kernel.debug", target=kernel.id)
        assert refused["outcome"] == "refused"
        # The kernel goes on answering, and never saw the request.
        assert kernel.execute("print(6 * 7)") == "42\n"
    finally:
        kernel.close()


ATTACK_THE_SERVER = """
import ctypes, json, os
libc = ctypes.CDLL(None, use_errno=True)
server = int(os.environ.get("JPY_PARENT_PID") or os.getppid())
attached = libc.ptrace(16, server, 0, 0)  # PTRACE_ATTACH
attach_errno = ctypes.get_errno()
try:
    with open(f"/proc/{server}/mem", "r+b") as memory:
        memory.seek(0x400000)
        memory.write(b"\\0")
    written = "written"
except OSError as error:
    written = type(error).__name__
print(json.dumps({"server": open(f"/proc/{server}/comm").read().strip(),
                  "attached": attached, "errno": attach_errno, "memory": written}))
"""
PLANT = """
import os, site
marker = os.path.expanduser("~/planted-code-ran")
command_line = "open('/proc/self/cmdline').read().replace(chr(0), ' ')"
hook = f"import os; open({marker!r}, 'a').write({command_line} + chr(10))"
os.makedirs(site.getusersitepackages(), exist_ok=True)
with open(os.path.join(site.getusersitepackages(), "enclave-attack.pth"), "w") as f:
    f.write(hook + "\\n")
for package in ("jupyterhub", "enclave_hub"):  # would shadow the server's own, from its folder
    os.makedirs(os.path.expanduser(f"~/{package}"), exist_ok=True)
    with open(os.path.expanduser(f"~/{package}/__init__.py"), "w") as f:
        f.write(hook + "\\n")
print("planted")
"""
UNPLANT = """
import os, shutil, site
for package in ("jupyterhub", "enclave_hub"):
    shutil.rmtree(os.path.expanduser(f"~/{package}"), ignore_errors=True)
os.remove(os.path.join(site.getusersitepackages(), "enclave-attack.pth"))
print(open(os.path.expanduser("~/planted-code-ran")).read() if os.path.exists(
    os.path.expanduser("~/planted-code-ran")) else "")
"""


def test_user_code_cannot_reach_the_server_that_records_it(enclave):
    user, project = "tess", "boundary"
    set_provider_claims(enclave, user, {"preferred_username": user, "groups": ["researchers"]})
    browser, _ = login(enclave, user)
    api = HubAPI(enclave, create_api_token(browser, user))
    url = session_url(enclave, user, project)
    assert api.start_session(user, project).status_code in (201, 202)
    api.wait_until_ready(user, project)
    attack = json.loads(run_in_kernel(url, api.token, ATTACK_THE_SERVER))
    assert attack["server"].startswith("python"), attack
    assert (attack["attached"], attack["errno"]) == (-1, errno.EPERM), attack
    assert attack["memory"] == "PermissionError", attack
    assert run_in_kernel(url, api.token, PLANT) == "planted\n"
    try:
        api.stop_session(user, project)
        assert api.start_session(user, project).status_code in (201, 202)
        api.wait_until_ready(user, project)
        since = time.time()
        assert run_in_kernel(url, api.token, "print('still recorded')") == "still recorded\n"
        wait_for_record(enclave, since, action="cell.execute", code="print('still recorded')")
    finally:
        ran = run_in_kernel(url, api.token, UNPLANT)
        api.stop_session(user, project)
    assert "jupyterhub.singleuser" not in ran, ran
