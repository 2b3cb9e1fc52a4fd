"""In a real browser: sign in on the provider's page, start a session, reach JupyterLab; an
auditor uses the audit console, which refuses a researcher; output checkers approve an export
and its requester downloads it."""

from __future__ import annotations

import time

import pytest
from browser_harness import sign_in
from playwright.sync_api import expect

from enclave_harness import (
    HubAPI,
    SessionNotebook,
    create_api_token,
    login,
    make_site_dir,
    run_in_kernel,
    session_url,
    set_provider_claims,
    start_enclave,
    write_site_config,
)

pytestmark = [pytest.mark.e2e, pytest.mark.browser]


def test_a_researcher_logs_in_in_a_browser_and_reaches_jupyterlab(enclave, browser, tmp_path):
    page = sign_in(browser, enclave, "bob")
    expect(page.locator("#enclave-projects")).to_contain_text("Cardiac MRI study")
    page.click("#start-cardiac-mri")
    expect(page.locator(".enclave-project")).to_contain_text("Cardiac MRI study")
    page.get_by_role("button", name="Start").click()

    page.wait_for_url(f"{enclave.url}/user/bob/cardiac-mri/lab*", timeout=90_000)
    expect(page.locator("#jp-main-dock-panel")).to_be_visible(timeout=60_000)
    page.screenshot(path=tmp_path / "jupyterlab.png")

    client, _ = login(enclave, "bob")
    HubAPI(enclave, create_api_token(client, "bob")).stop_session("bob", "cardiac-mri")


def test_the_auditor_uses_the_audit_console_and_a_researcher_is_refused(enclave, browser, tmp_path):
    # Something to audit: alice runs a cell in a session.
    client, _ = login(enclave, "alice")
    api = HubAPI(enclave, create_api_token(client, "alice"))
    assert api.start_session("alice", "genomics-pilot").status_code in (201, 202)
    api.wait_until_ready("alice", "genomics-pilot")
    url = session_url(enclave, "alice", "genomics-pilot")
    assert run_in_kernel(url, api.token, "print('for the auditor')") == "for the auditor\n"
    api.stop_session("alice", "genomics-pilot")
    console = f"{enclave.url}/services/enclave-audit/"

    auditor = sign_in(browser, enclave, "dave")
    auditor.goto(console)
    expect(auditor.locator("#signed-in")).to_have_text("dave")
    expect(auditor.locator("#integrity-status")).to_contain_text("The log verifies")

    auditor.fill("#filters input[name=user]", "alice")
    auditor.fill("#filters input[name=type]", "session.start")
    auditor.get_by_role("button", name="Filter").click()
    first = auditor.locator("tr.record").first
    expect(first).to_contain_text("session.start")
    expect(first).to_contain_text("genomics-pilot")

    # The session's timeline: its start, the cell's code, its stop.
    first.locator("a").click()
    expect(auditor.locator("h1")).to_contain_text("of alice")
    timeline = auditor.locator("tr.record")
    expect(timeline.filter(has_text="cell.execute")).to_contain_text("for the auditor")
    expect(timeline.filter(has_text="session.stop")).to_have_count(1)

    auditor.goto(console + "datasets?dataset=ds-imaging")
    expect(auditor.locator("#dataset-access input[name=dataset]")).to_have_value("ds-imaging")
    auditor.goto(console + "integrity")
    expect(auditor.locator("#integrity-status")).to_contain_text("Every record")
    auditor.screenshot(path=tmp_path / "audit-console.png")

    researcher = sign_in(browser, enclave, "alice")
    refused = researcher.goto(console)
    assert refused is not None and refused.status == 403
    expect(researcher.locator("tr.record")).to_have_count(0)


def test_an_admin_creates_a_project_in_the_pages_and_its_member_starts_a_session(enclave, browser):
    registry = f"{enclave.url}/services/enclave-registry/"
    member = sign_in(browser, enclave, "erin")  # someone who has signed in: no warning
    admin = sign_in(browser, enclave, "carol")
    admin.goto(registry)
    expect(admin.locator("#signed-in")).to_have_text("carol")
    admin.fill("#create-project input[name=id]", "web-made")
    admin.fill("#create-project input[name=title]", "Made in the browser")
    admin.get_by_role("button", name="Create project").click()
    expect(admin.locator("#project-title")).to_contain_text("Made in the browser")

    admin.fill("#add-member input[name=username]", "erin")
    admin.get_by_role("button", name="Add member").click()
    expect(admin.locator("#members")).to_contain_text("erin")
    admin.fill("#grant-dataset input[name=dataset]", "../ds-imaging")
    admin.get_by_role("button", name="Grant dataset").click()
    expect(admin.locator("#grant-dataset .invalid-feedback")).to_contain_text("'../ds-imaging'")
    expect(admin.locator("#grant-dataset input[name=dataset]")).to_have_value("../ds-imaging")
    admin.fill("#grant-dataset input[name=dataset]", "ds-imaging")
    admin.get_by_role("button", name="Grant dataset").click()
    expect(admin.locator("#datasets")).to_contain_text("ds-imaging")

    member.reload()
    expect(member.locator("#enclave-projects")).to_contain_text("Made in the browser")
    member.click("#start-web-made")
    member.get_by_role("button", name="Start").click()
    member.wait_for_url(f"{enclave.url}/user/erin/web-made/lab*", timeout=90_000)
    expect(member.locator("#jp-main-dock-panel")).to_be_visible(timeout=60_000)

    # Removing the member asks first; once confirmed, her session is stopped.
    admin.goto(registry + "projects/web-made")
    admin.get_by_role("link", name="remove erin").click()
    expect(admin.locator("#question")).to_contain_text("End erin's membership")
    admin.get_by_role("button", name="Yes, remove member").click()
    expect(admin.locator("#members")).not_to_contain_text("erin")

    client, _ = login(enclave, "erin")
    api = HubAPI(enclave, create_api_token(client, "erin"))
    deadline = 30
    while deadline and "web-made" in api.http.get("/users/erin").json()["servers"]:
        time.sleep(1)
        deadline -= 1
    assert "web-made" not in api.http.get("/users/erin").json()["servers"]


def test_output_checkers_review_and_approve_an_export_in_the_pages(enclave, browser, tmp_path):
    quinn = SessionNotebook(enclave, "quinn", "airlock-study")
    try:
        made = quinn.run(
            "import enclave, json, pathlib\n"
            "pathlib.Path('out').mkdir(exist_ok=True)\n"
            "pathlib.Path('out/ages.csv').write_text('band,n\\n40-49,31\\n50-59,0\\n')\n"
            "r = enclave.request_export(['out/ages.csv'], justification='Figure 2 counts')\n"
            "print(json.dumps({'id': r.id}))\n"
        )
        airlock = f"{enclave.url}/services/enclave-airlock/"
        for checker in ("erin", "rose"):
            page = sign_in(browser, enclave, checker)
            page.goto(airlock)
            expect(page.locator("#signed-in")).to_have_text(checker)
            page.locator("#awaiting").get_by_role("link", name=f"#{made['id']}").click()
            expect(page.locator("#justification")).to_have_text("Figure 2 counts")
            expect(page.locator("#files")).to_contain_text("zero cell")
            # The zero cell is flagged: approving it needs a comment.
            page.get_by_role("button", name="Approve").click()
            expect(page.locator("#error")).to_contain_text("say in a comment why")
            page.go_back()
            page.fill("#review textarea[name=comment]", f"{checker}: the zero is structural")
            page.get_by_role("button", name="Approve").click()
            expect(page.locator("#reviews")).to_contain_text(f"{checker}: the zero is structural")
        expect(page.locator("#request-status")).to_have_text("released")
        page.screenshot(path=tmp_path / "airlock-released.png")

        # The requester downloads it in her browser, and finds the entry in JupyterLab's menu.
        researcher = sign_in(browser, enclave, "quinn")
        researcher.goto(f"{airlock}requests/{made['id']}")
        with researcher.expect_download() as download:
            researcher.locator("#downloads").get_by_role("link", name="out/ages.csv").click()
        assert download.value.path().read_text() == "band,n\n40-49,31\n50-59,0\n"
        researcher.goto(f"{enclave.url}/user/quinn/airlock-study/lab")
        expect(researcher.locator("#jp-main-dock-panel")).to_be_visible(timeout=60_000)
        researcher.get_by_role("menuitem", name="File").click()
        expect(researcher.get_by_text("Request an export…")).to_be_visible()
    finally:
        quinn.stop()


# What a planted script tries: make an API token for whoever's browser runs it.
TAKE_A_TOKEN = """
fetch("/hub/home").then(page => page.text()).then(home => {
  const xsrf = (home.match(/xsrf_token: "([^"]+)"/) || [])[1] || "";
  return fetch("/hub/api/user", {headers: {"X-XSRFToken": xsrf}}).then(me => me.json()).then(me =>
    fetch(`/hub/api/users/${me.name}/tokens`, {
      method: "POST",
      headers: {"X-XSRFToken": xsrf, "Content-Type": "application/json"},
      body: JSON.stringify({note: "planted"}),
    }));
});
"""
# Alice's tokens' notes, as her hub page may read them (at least the one of her session).
TOKEN_NOTES = """
fetch("/hub/home").then(page => page.text()).then(home => {
  const headers = {"X-XSRFToken": (home.match(/xsrf_token: "([^"]+)"/) || [])[1] || ""};
  return fetch("/hub/api/user", {headers}).then(me => me.json()).then(me =>
    fetch(`/hub/api/users/${me.name}/tokens`, {headers})).then(found => found.json())
    .then(found => found.api_tokens.map(token => token.note || ""));
});
"""
PLANT_IN_PROJECT = """
import json, pathlib
script = {script!r}
planted = pathlib.Path("/project/planted")
planted.mkdir(exist_ok=True)
(planted / "page.html").write_text(f"<h1>Results</h1><script>{{script}}</script>")
(planted / "figure.svg").write_text(
    '<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10" '
    f'onload="{{script.replace(chr(34), chr(39))}}"><rect width="10" height="10"/></svg>')
output = {{"output_type": "display_data", "metadata": {{}}, "data": {{
    "text/html": f"<b>table</b><img src=x onerror='{{script}}'><script>{{script}}</script>",
    "application/javascript": script}}}}
cell = {{"cell_type": "code", "execution_count": 1, "metadata": {{}}, "source": "show()",
        "outputs": [output]}}
notebook = {{"cells": [cell], "metadata": {{}}, "nbformat": 4, "nbformat_minor": 5}}
(planted / "report.ipynb").write_text(json.dumps(notebook))
out = pathlib.Path("out")
out.mkdir(exist_ok=True)
for name in ("page.html", "figure.svg", "report.ipynb"):
    (out / name).write_text((planted / name).read_text())
import enclave
r = enclave.request_export([f"out/{{n}}" for n in ("page.html", "figure.svg", "report.ipynb")],
                           justification="figures for the paper")
print(json.dumps({{"id": r.id}}))
"""


def _planted_tokens(api: HubAPI, username: str) -> list[dict]:
    tokens = api.http.get(f"/users/{username}/tokens").json()["api_tokens"]
    return [t for t in tokens if t.get("note") == "planted"]


def test_a_script_planted_in_the_project_runs_with_no_ones_credentials(enclave, browser):
    for user in ("wes", "uma", "vic"):
        claims = {"preferred_username": user, "groups": ["researchers"]}
        set_provider_claims(enclave, user, claims)
    # The attack works where a script does run: in a page of the hub itself.
    wes = sign_in(browser, enclave, "wes")
    wes.evaluate(TAKE_A_TOKEN)
    wes_api = HubAPI(enclave, create_api_token(login(enclave, "wes")[0], "wes"))
    deadline = time.monotonic() + 10
    while not _planted_tokens(wes_api, "wes"):
        assert time.monotonic() < deadline, "the planted script's attack does not work at all"
        time.sleep(0.5)

    uma = SessionNotebook(enclave, "uma", "boundary")
    vic = SessionNotebook(enclave, "vic", "boundary")
    try:
        request = uma.run(PLANT_IN_PROJECT.format(script=TAKE_A_TOKEN))
        vic.run("import shutil, json\nshutil.copytree('/project/planted', 'planted')\nprint('{}')")
        viewer = sign_in(browser, enclave, "vic")
        lab = f"{enclave.url}/user/vic/boundary/lab"
        answer = viewer.goto(lab)
        policy = dict(
            directive.strip().split(" ", 1)
            for directive in answer.headers["content-security-policy"].split(";")
        )
        assert policy["script-src"] == "'self' 'unsafe-eval'", "no inline script runs in a session"
        assert policy["frame-ancestors"] == "'self'"
        for name in ("page.html", "figure.svg", "report.ipynb"):
            viewer.goto(f"{lab}/tree/planted/{name}")
            expect(viewer.locator("#jp-main-dock-panel")).to_be_visible(timeout=60_000)
            expect(viewer.locator(".jp-MainAreaWidget").last).to_be_visible(timeout=30_000)
            time.sleep(3)  # what a planted script would do, it does now
        checker = sign_in(browser, enclave, "erin")
        airlock = f"{enclave.url}/services/enclave-airlock/"
        page = checker.goto(airlock)
        assert "script-src 'none'" in page.headers["content-security-policy"]
        for name in ("page.html", "figure.svg", "report.ipynb"):
            shown = checker.goto(f"{airlock}requests/{request['id']}/snapshots/out/{name}")
            assert shown.status == 200, name
            assert shown.headers["content-security-policy"].startswith("sandbox")
            assert shown.headers["x-content-type-options"] == "nosniff"
            assert shown.headers["content-type"].startswith("text/plain"), name
            time.sleep(2)
        erin_api = HubAPI(enclave, create_api_token(login(enclave, "erin")[0], "erin"))
        assert _planted_tokens(vic.api, "vic") == []
        assert _planted_tokens(erin_api, "erin") == []
    finally:
        uma.stop()
        vic.stop()


def test_each_users_sessions_have_an_origin_of_their_own(browser):
    projects = [{"id": "origins", "title": "Origins of their own", "members": ["alice"]}]
    config = write_site_config(make_site_dir(), projects=projects, hub={"user_subdomains": True})
    enclave = start_enclave(config)
    try:
        port = enclave.config["hub"]["port"]
        assert enclave.url == f"http://localhost:{port}"
        page = sign_in(browser, enclave, "alice")
        page.click("#start-origins")
        page.get_by_role("button", name="Start").click()
        page.wait_for_url(f"http://alice.localhost:{port}/user/alice/origins/lab*", timeout=90_000)
        expect(page.locator("#jp-main-dock-panel")).to_be_visible(timeout=60_000)
        hub_cookies = {c["name"] for c in page.context.cookies(f"{enclave.url}/hub/")}
        session_cookies = {c["name"] for c in page.context.cookies(page.url)}
        assert "jupyterhub-hub-login" in hub_cookies
        assert "jupyterhub-hub-login" not in session_cookies, "the hub's sign-in stays the hub's"
        # A script that did run in the session's page (CSP keeps planted ones from running)
        # reaches the hub without alice's sign-in.
        page.evaluate(TAKE_A_TOKEN)
        hub_page = page.context.new_page()
        hub_page.goto(f"{enclave.url}/hub/home")
        notes = hub_page.evaluate(TOKEN_NOTES)
        assert notes, "the hub's own page lists alice's tokens"
        assert "planted" not in notes
        # The session's export page sends her to the airlock on the hub's origin.
        page.goto(f"http://alice.localhost:{port}/user/alice/origins/enclave/airlock/")
        airlock = page.get_by_role("link", name="the airlock")
        expect(airlock).to_have_attribute("href", f"{enclave.url}/services/enclave-airlock/")
    finally:
        assert enclave.stop() == 0, enclave.output()
