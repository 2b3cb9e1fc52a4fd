"""The airlock from a real session, through the real hub, services and audit log: a request,
its checks, two independent approvals, the download outside the session; and no other way out.
Last, the running deployment with its release is backed up and restored.

The project `airlock-study` (conftest.py) has one researcher, quinn, and the two demo output
checkers, erin and rose.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import subprocess
import sys

import httpx
import pytest
from bs4 import BeautifulSoup

from enclave_harness import SessionNotebook, create_api_token, login
from enclave_hub.audit.query import records
from enclave_hub.core.registry import site_registry
from enclave_hub.core.site_config import load_site_config
from enclave_hub.local.hub_files import hub_paths

pytestmark = pytest.mark.e2e

PROJECT = "airlock-study"
AIRLOCK = "/services/enclave-airlock/"
TABLE = "site,n\nleeds,12\nyork,40\n"


@pytest.fixture(scope="module")
def quinn(enclave):
    notebook = SessionNotebook(enclave, "quinn", PROJECT)
    yield notebook
    notebook.stop()


def checker_token(enclave, name: str) -> str:
    client, _ = login(enclave, name)
    return create_api_token(client, name)


def review(enclave, token: str, request_id: int, decision: str, comment: str = ""):
    return httpx.post(
        f"{enclave.url}{AIRLOCK}api/requests/{request_id}/reviews",
        headers={"Authorization": f"token {token}"},
        json={"decision": decision, "comment": comment},
        timeout=60,
    )


def export(quinn: SessionNotebook, files: dict[str, str], paths: list[str], **options) -> dict:
    """Write `files` in the session, request `paths`; the request as the library returns it."""
    writes = "".join(
        f"p = pathlib.Path({name!r}); p.parent.mkdir(parents=True, exist_ok=True); "
        f"p.write_text({content!r})\n"
        for name, content in files.items()
    )
    return quinn.run(
        "import enclave, json, pathlib\n"
        f"{writes}"
        f"r = enclave.request_export({paths!r}, justification='Table 1 of the paper', "
        f"**{options!r})\n"
        "print(json.dumps({'id': r.id, 'status': r.status, 'checks': r.checks, "
        "'problems': r.problems(), 'files': r.files}))\n"
    )


def airlock_events(enclave, request_id: int) -> list[tuple[str, str]]:
    target = f"airlock-request/{request_id}"
    log = records(enclave.state_dir / "audit")
    return [(r["action"], r["actor"]) for r in log if r.get("target") == target]


def test_a_csv_is_checked_approved_twice_and_downloaded_outside_the_session(enclave, quinn):
    request = export(quinn, {"results/by_site.csv": TABLE}, ["results/by_site.csv"])
    assert request["status"] == "in-review" and request["checks"] == "pass", request
    snapshot = request["files"][0]
    assert snapshot["sha256"] == hashlib.sha256(TABLE.encode()).hexdigest()
    # Changed in the session after the request: what is released is the snapshot.
    quinn.run(
        "import json, pathlib\n"
        "pathlib.Path('results/by_site.csv').write_text('site,n\\nyork,3\\n')\n"
        "print(json.dumps({}))\n"
    )
    number = request["id"]

    own = review(enclave, quinn.token, number, "approve")
    assert own.status_code == 403 and "their own request" in own.json()["error"]
    erin, rose = checker_token(enclave, "erin"), checker_token(enclave, "rose")
    assert review(enclave, erin, number, "approve").json()["status"] == "in-review"
    again = review(enclave, erin, number, "approve")
    assert again.status_code == 409 and "already reviewed" in again.json()["error"]
    download = f"{enclave.url}{AIRLOCK}requests/{number}/files/"
    early = quinn.client.get(download + "results/by_site.csv")
    assert early.status_code == 409, early.text  # one approval is not enough
    released = review(enclave, rose, number, "approve", "counts of 10 or more")
    assert released.status_code == 201 and released.json()["status"] == "released"

    # Downloaded in quinn's browser (signed in at the hub), outside the session.
    got = quinn.client.get(download + "results/by_site.csv")
    assert got.status_code == 200 and got.content == TABLE.encode()
    assert "attachment" in got.headers["Content-Disposition"]
    record = quinn.client.get(download + "release.json").json()
    assert record["files"][0]["sha256"] == hashlib.sha256(got.content).hexdigest()
    assert [(r["reviewer"], r["decision"]) for r in record["reviews"]] == [
        ("erin", "approve"),
        ("rose", "approve"),
    ]
    assert record["requester"] == "quinn" and record["project"] == PROJECT
    assert record["session"], "the session run the request came from"
    assert record["environment"]["packages"]["pandas"] == "2.3.3"
    assert record["checks"]["results"][0]["outcome"] == "pass"
    assert record["datasets"] == {"ds-imaging": {"version": None, "title": None}}

    # The session itself cannot fetch the release, nor can another checker.
    from_session = quinn.run(
        "import httpx, os, json\n"
        f"r = httpx.get(os.environ['ENCLAVE_AIRLOCK_URL'] + 'requests/{number}/files/"
        "results/by_site.csv', headers={'Authorization': 'token ' + "
        "os.environ['JUPYTERHUB_API_TOKEN']})\n"
        "print(json.dumps({'status': r.status_code}))\n"
    )
    assert from_session["status"] == 403
    other = httpx.get(
        download + "results/by_site.csv", headers={"Authorization": f"token {erin}"}, timeout=30
    )
    assert other.status_code == 403

    assert airlock_events(enclave, number) == [
        ("airlock.request", "quinn"),
        ("airlock.checks", "quinn"),
        ("airlock.approve", "erin"),
        ("airlock.approve", "rose"),
        ("airlock.release", "rose"),
        ("airlock.download", "quinn"),
        ("airlock.download", "quinn"),
    ]


def test_a_failing_table_waits_for_a_revision_and_bad_files_are_refused(enclave, quinn):
    failing = export(
        quinn,
        {"results/small.csv": "site,n\nleeds,12\nyork,9\n", "results/note.py": "x = 1\n"},
        ["results/small.csv", "results/note.py"],
    )
    assert failing["status"] == "checks-failed"
    assert any("york n=9" in p and "minimum of 10" in p for p in failing["problems"])
    erin = checker_token(enclave, "erin")
    refused = review(enclave, erin, failing["id"], "approve")
    assert refused.status_code == 409 and "checks-failed" in refused.json()["error"]

    revised = export(
        quinn,
        {"results/small.csv": "site,n\nleeds,12\nother,<10\n"},
        ["results/small.csv"],
        revises=failing["id"],
    )
    assert revised["id"] == failing["id"] and revised["status"] == "in-review"

    # A DICOM file from the project's data is refused, whatever its name.
    dicom = quinn.run(
        "import enclave, json, shutil, pydicom.data\n"
        "shutil.copy(pydicom.data.get_testdata_file('CT_small.dcm'), 'results/table.csv')\n"
        "r = enclave.request_export(['results/table.csv'], justification='a table')\n"
        "print(json.dumps({'status': r.status, 'problems': r.problems()}))\n"
    )
    assert dicom["status"] == "checks-failed"
    assert "DICOM files are refused" in " ".join(dicom["problems"])


def test_requests_outside_the_home_and_project_folders_are_refused_clearly(quinn):
    answer = quinn.run(
        "import enclave, json\n"
        "try:\n"
        "    enclave.request_export(['/etc/passwd'], justification='x')\n"
        "except enclave.ExportError as error:\n"
        "    print(json.dumps({'error': str(error)}))\n"
    )
    assert "only files in your home folder" in answer["error"]


def test_the_sessions_download_routes_answer_403_to_the_user(enclave, quinn):
    quinn.run(
        "import json, pathlib, nbformat\n"
        "pathlib.Path('results').mkdir(exist_ok=True)\n"
        "pathlib.Path('results/by_site.csv').write_text('site,n\\nleeds,12\\n')\n"
        "nbformat.write(nbformat.v4.new_notebook(), 'analysis.ipynb')\n"
        "print(json.dumps({}))\n"
    )
    token = {"Authorization": f"token {quinn.token}"}
    for path in (
        "files/results/by_site.csv",
        "files/results/by_site.csv?download=1",
        "view/results/by_site.csv",
        "nbconvert/html/analysis.ipynb?download=true",
        "nbconvert/script/analysis.ipynb",
    ):
        with_token = httpx.get(quinn.url + path, headers=token, timeout=30)
        assert with_token.status_code == 403, (path, with_token.status_code)
        assert "through the airlock" in with_token.text
        assert quinn.client.get(quinn.url + path).status_code == 403, path  # browser cookies
    # The session works otherwise: its contents API still lists the files.
    listing = httpx.get(quinn.url + "api/contents/results", headers=token, timeout=30)
    assert listing.status_code == 200

    # JupyterLab's download and export commands are off, and its File menu leads to the
    # session's export page.
    lab = quinn.client.get(quinn.url + "lab")
    assert lab.status_code == 200
    script = BeautifulSoup(lab.text, "html.parser").find("script", id="jupyter-config-data")
    page_config = json.loads(script.string)
    assert "@jupyterlab/filebrowser-extension:download" in page_config["disabledExtensions"]
    assert "@jupyterlab/notebook-extension:export" in page_config["disabledExtensions"]
    # No news or update checks: they would reach for the internet from an offline enclave.
    assert "@jupyterlab/apputils-extension:announcements" in page_config["disabledExtensions"]
    assert page_config["appName"] == "Outputs under review · Enclave"
    menu = httpx.get(
        quinn.url + "lab/api/settings/@jupyterlab/mainmenu-extension:plugin", headers=token
    ).json()
    entries = menu["schema"]["properties"]["menus"]["default"]
    file_menu = next(m for m in entries if m["id"] == "jp-mainmenu-file")
    assert any(
        item.get("args", {}).get("url") == f"/user/quinn/{PROJECT}/enclave/airlock/"
        for item in file_menu["items"]
    ), file_menu


def test_the_sessions_export_page_sends_a_request(enclave, quinn):
    page = quinn.client.get(quinn.url + "enclave/airlock/")
    assert page.status_code == 200 and "results/by_site.csv" in page.text, page.text[-3000:]
    xsrf = quinn.client.cookies.get("_xsrf", path=f"/user/quinn/{PROJECT}/")
    sent = quinn.client.post(
        quinn.url + "enclave/airlock/",
        data={
            "_xsrf": xsrf,
            "output": "results/by_site.csv",
            "justification": "The site table, from the page",
        },
    )
    assert sent.status_code == 200, sent.text
    assert "in-review" in sent.text


def airlock_cli(enclave, *argv: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "enclave_hub.cli", "airlock", *argv]
    return subprocess.run(
        [*command, "--config", str(enclave.base / "enclave.yaml")], capture_output=True, text=True
    )


def test_the_command_line_lists_shows_and_decides_for_named_checkers(enclave, quinn):
    request = export(quinn, {"results/cli.csv": TABLE}, ["results/cli.csv"])
    number = str(request["id"])
    listed = airlock_cli(enclave, "list", "--status", "in-review")
    assert listed.returncode == 0 and f"{number}  in-review" in listed.stdout
    shown = json.loads(airlock_cli(enclave, "show", number).stdout)
    assert shown["revisions"][0]["files"][0]["name"] == "results/cli.csv"

    own = airlock_cli(enclave, "approve", number, "--checker", "quinn")
    assert own.returncode == 2 and "no one may review their own request" in own.stderr
    assert airlock_cli(enclave, "approve", number, "--checker", "erin").returncode == 0
    done = airlock_cli(enclave, "approve", number, "--checker", "rose", "--comment", "ok")
    assert done.returncode == 0 and "is released" in done.stdout
    log = records(enclave.state_dir / "audit")
    sources = {r.get("source") for r in log if r.get("target") == f"airlock-request/{number}"}
    assert any(s and s.startswith("command line (") for s in sources)


def _enclave_cli(*argv: object) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "enclave_hub.cli", *map(str, argv)]
    return subprocess.run(command, capture_output=True, text=True)


def test_a_running_deployment_is_backed_up_and_restored_whole(enclave, quinn, tmp_path):
    """`enclave backup` while quinn's session runs, `enclave restore` into a fresh state folder
    as on a new machine: projects, members, grants, the release, the hub's record of the
    session and a log that verifies against the pinned key are all there."""
    request = export(quinn, {"results/backed-up.csv": TABLE}, ["results/backed-up.csv"])
    number = str(request["id"])
    assert airlock_cli(enclave, "approve", number, "--checker", "erin").returncode == 0
    assert "is released" in airlock_cli(enclave, "approve", number, "--checker", "rose").stdout
    passphrase = tmp_path / "passphrase"
    passphrase.write_text("a passphrase the operator keeps\n")
    backup, state = tmp_path / "backup", tmp_path / "restored"

    # The configuration as `enclave up` runs it, with the key it pinned on its first start.
    running = enclave.state_dir / "run" / "site.yaml"
    taken = _enclave_cli(
        "backup", backup, "--config", running,
        "--keys", "encrypt", "--passphrase-file", passphrase,
    )  # fmt: skip
    assert taken.returncode == 0, taken.stderr
    restored = _enclave_cli(
        "restore", backup, "--state-dir", state, "--passphrase-file", passphrase
    )
    assert restored.returncode == 0, restored.stderr

    site = load_site_config(state / "enclave.yaml")
    assert site.audit.key_fingerprint == load_site_config(running).audit.key_fingerprint
    before, after = site_registry(enclave.site, False), site_registry(site, False)
    projects = before.list_projects()
    assert after.list_projects() == projects and projects
    for project in projects:
        assert after.show(project["id"]) == before.show(project["id"])
    outbox = site.airlock_dir / "outbox" / "quinn" / number
    assert (outbox / "results" / "backed-up.csv").read_bytes() == TABLE.encode()
    with sqlite3.connect(hub_paths(site)["database"]) as hub:
        servers = hub.execute(
            "SELECT spawners.name FROM spawners JOIN users ON users.id = spawners.user_id "
            "WHERE users.name = 'quinn' AND spawners.server_id IS NOT NULL"
        ).fetchall()
    assert servers == [(PROJECT,)]
    verified = _enclave_cli("audit", "verify", "--config", state / "enclave.yaml")
    assert verified.returncode == 0 and json.loads(verified.stdout)["ok"], verified.stdout
