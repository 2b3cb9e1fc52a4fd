"""The package index from a real session, through the real hub, registry and audit log, with
an index on this machine standing in for the internet's (package_upstream.py): pip installs
what the project may install with no configuration; a name not allowed is refused with how
to ask for it, and never asked upstream; the researcher asks, an admin allows it in the
registry's page, and pip installs it; every file served is recorded.

The project `package-study` (conftest.py) has one researcher, pat; the site allows
`enclave-demo-stats` and `enclave-demo-util`.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys

import httpx
import pytest
from browser_harness import sign_in
from playwright.sync_api import expect

from enclave_harness import SessionNotebook
from enclave_hub.audit.query import records
from enclave_hub.core.services import PACKAGES

pytestmark = [pytest.mark.e2e]

PROJECT = "package-study"


@pytest.fixture(scope="module")
def pat(enclave):
    notebook = SessionNotebook(enclave, "pat", PROJECT)
    yield notebook
    notebook.stop()


def pip_install(pat: SessionNotebook, name: str) -> dict:
    """`pip install name` in pat's session as a researcher types it: no option, no config."""
    return pat.run(
        "import json, subprocess, sys\n"
        f"r = subprocess.run([sys.executable, '-m', 'pip', 'install', {name!r}], "
        "capture_output=True, text=True)\n"
        "print(json.dumps({'rc': r.returncode, 'output': r.stdout + r.stderr}))\n"
    )


def downloads(enclave) -> list[dict]:
    return [r for r in records(enclave.state_dir / "audit") if r["action"] == "package.download"]


def packages_cli(enclave, *argv: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "enclave_hub.cli", "packages", *argv]
    return subprocess.run(
        [*command, "--config", str(enclave.base / "enclave.yaml")], capture_output=True, text=True
    )


def test_an_allowed_package_installs_with_its_dependency_and_is_recorded(
    enclave, pat, package_upstream
):
    installed = pip_install(pat, "enclave-demo-stats")
    assert installed["rc"] == 0, installed["output"]
    used = pat.run(
        "import json, enclave_demo_stats\n"
        "print(json.dumps({'sum': enclave_demo_stats.twice_sum([1, 2, 3]), "
        "'at': enclave_demo_stats.__file__}))\n"
    )
    assert used["sum"] == 12
    assert used["at"].startswith("/home/") and "/.local/" in used["at"], used

    files = {r["detail"]["package"]: r for r in downloads(enclave) if r["project"] == PROJECT}
    assert set(files) == {"enclave-demo-stats", "enclave-demo-util"}
    stats = files["enclave-demo-stats"]
    assert stats["actor"] == "pat" and stats["session"], stats
    assert stats["detail"]["version"] == "1.0"
    assert stats["detail"]["file"] == package_upstream.wheels["enclave-demo-stats"].name
    wheel = package_upstream.wheels["enclave-demo-stats"].read_bytes()
    assert stats["detail"]["sha256"] == hashlib.sha256(wheel).hexdigest()


def test_a_name_not_allowed_is_refused_with_how_to_ask_and_never_asked_upstream(
    enclave, pat, package_upstream
):
    refused = pip_install(pat, "enclave-secret-name")
    assert refused["rc"] != 0
    assert "enclave.request_package('enclave-secret-name'" in refused["output"], refused
    # Allowed for another project only: still refused here.
    allowed = packages_cli(enclave, "allow", "enclave-secret-name", "--project", "cancer-imaging")
    assert allowed.returncode == 0, allowed.stderr
    assert pip_install(pat, "Enclave_Secret.Name")["rc"] != 0
    assert package_upstream.asked_about("enclave-secret-name") == []
    listed = packages_cli(enclave, "list")
    assert "enclave-secret-name" in listed.stdout and "cancer-imaging" in listed.stdout


def test_only_a_sessions_own_token_reaches_the_index(enclave, pat):
    # Not routed by the public proxy: reached on the hub's address only.
    public = httpx.get(f"{enclave.url}{PACKAGES.prefix}simple/", timeout=30)
    assert "enclave-demo-stats" not in public.text
    index = f"{enclave.site.packages_url}{PACKAGES.prefix}simple/"
    assert httpx.get(index, timeout=30).status_code == 401
    own = {"Authorization": f"token {pat.token}"}  # pat's own API token, not the session's
    assert httpx.get(index, headers=own, timeout=30).status_code == 403
    from_session = pat.run(
        "import json, os, httpx\n"
        "r = httpx.get(os.environ['PIP_INDEX_URL'])\n"
        "print(json.dumps({'status': r.status_code, 'text': r.text}))\n"
    )
    assert from_session["status"] == 200
    assert "enclave-demo-stats" in from_session["text"]
    assert "enclave-secret-name" not in from_session["text"]


@pytest.mark.browser
def test_a_request_is_approved_in_the_registry_and_the_package_installs(
    enclave, pat, package_upstream, browser
):
    assert pip_install(pat, "enclave-extra")["rc"] != 0
    asked = pat.run(
        "import json, enclave\n"
        "r = enclave.request_package('enclave-extra', 'the answer to everything')\n"
        "print(json.dumps(r))\n"
    )
    assert asked["status"] == "requested" and asked["name"] == "enclave-extra", asked
    again = pat.run(
        "import json, enclave\n"
        "try:\n"
        "    enclave.request_package('enclave-extra', 'again')\n"
        "    print(json.dumps({'error': None}))\n"
        "except enclave.PackageRequestError as error:\n"
        "    print(json.dumps({'error': str(error)}))\n"
    )
    assert "requested already" in again["error"]
    assert package_upstream.asked_about("enclave-extra") == []

    admin = sign_in(browser, enclave, "carol")
    admin.goto(f"{enclave.url}/services/enclave-registry/packages")
    row = admin.locator(f"#package-request-{asked['id']}")
    expect(row).to_contain_text("the answer to everything")
    row.get_by_role("button", name=f"Allow enclave-extra in {PROJECT}").click()
    expect(admin.locator("#notice")).to_contain_text("enclave-extra may be installed")
    expect(admin.locator("#package-allowances")).to_contain_text(PROJECT)

    # The researcher sees the answer on the session's page, in a browser signed in as pat.
    researcher = sign_in(browser, enclave, "pat")
    researcher.goto(f"{pat.url}enclave/packages/")
    expect(researcher.locator("#requests")).to_contain_text("approved")
    expect(researcher.locator("#requests")).to_contain_text("carol")
    installed = pip_install(pat, "enclave-extra")
    assert installed["rc"] == 0, installed["output"]
    assert pat.run("import json, enclave_extra\nprint(json.dumps(enclave_extra.ANSWER))\n") == 42
    events = [
        r["action"]
        for r in records(enclave.state_dir / "audit")
        if r.get("target") == "package:enclave-extra"
    ]
    assert events == ["package.request", "package.approve"]


def test_the_session_page_asks_and_the_help_menu_opens_it(enclave, pat):
    token = {"Authorization": f"token {pat.token}"}
    menu = httpx.get(
        pat.url + "lab/api/settings/@jupyterlab/mainmenu-extension:plugin", headers=token
    ).json()
    entries = menu["schema"]["properties"]["menus"]["default"]
    help_menu = next(m for m in entries if m["id"] == "jp-mainmenu-help")
    assert any(
        item.get("args", {}).get("url") == f"/user/pat/{PROJECT}/enclave/packages/"
        for item in help_menu["items"]
    ), help_menu
    page = pat.client.get(pat.url + "enclave/packages/")
    assert page.status_code == 200 and "Request a package" in page.text
    xsrf = pat.client.cookies.get("_xsrf", path=f"/user/pat/{PROJECT}/")
    sent = pat.client.post(
        pat.url + "enclave/packages/",
        data={"name": "not a name!", "reason": "typo", "_xsrf": xsrf},
    )
    assert sent.status_code == 400 and "not a valid Python package name" in sent.text
    assert 'value="not a name!"' in sent.text  # what was typed is kept
    made = pat.client.post(
        pat.url + "enclave/packages/",
        data={"name": "enclave-unhashed", "reason": "checksums", "_xsrf": xsrf},
    )
    assert made.status_code == 200 and "is with the admins" in made.text
    waiting = packages_cli(enclave, "requests").stdout.splitlines()
    (line,) = [w for w in waiting if "enclave-unhashed" in w]
    assert "requested" in line and "pat" in line and "checksums" in line
    rejected = packages_cli(enclave, "reject", line.split()[0], "--answer", "no published hash")
    assert rejected.returncode == 0, rejected.stderr
    answered = pat.client.get(pat.url + "enclave/packages/").text
    assert "rejected" in answered and "no published hash" in answered
