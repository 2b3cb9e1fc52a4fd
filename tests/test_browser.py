"""In a real browser: sign in on the provider's page, start a session, reach JupyterLab; an
auditor uses the audit console, which refuses a researcher; output checkers approve an export
and its requester downloads it."""

from __future__ import annotations

import shutil
import time

import pytest
from playwright.sync_api import expect, sync_playwright

from enclave_harness import (
    HubAPI,
    SessionNotebook,
    create_api_token,
    login,
    run_in_kernel,
    session_url,
)

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _chromium() -> str:
    path = shutil.which("chromium")
    assert path, "Debian's chromium is required: the README's test command installs it"
    return path


@pytest.fixture
def browser():
    """Debian's Chromium, headless, driven by Playwright."""
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=_chromium(), headless=True, args=CHROMIUM_FLAGS
        )
        yield chromium
        chromium.close()


def _sign_in(browser, enclave, username: str):
    """A fresh browser context, signed in on the development provider's own login page."""
    page = browser.new_context().new_page()
    page.goto(f"{enclave.url}/hub/login")
    page.get_by_role("button", name="Sign in with").click()
    page.wait_for_url(f"{enclave.idp_url}/oauth2/authorize*")
    page.fill("input[name=sub]", username)
    page.get_by_role("button", name="Authorize").click()
    page.wait_for_url(f"{enclave.url}/hub/home")
    return page


def test_a_researcher_logs_in_in_a_browser_and_reaches_jupyterlab(enclave, browser, tmp_path):
    page = _sign_in(browser, enclave, "bob")
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

    auditor = _sign_in(browser, enclave, "dave")
    auditor.goto(console)
    expect(auditor.locator("#auditor")).to_have_text("dave")
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

    researcher = _sign_in(browser, enclave, "alice")
    refused = researcher.goto(console)
    assert refused is not None and refused.status == 403
    expect(researcher.locator("tr.record")).to_have_count(0)


def test_an_admin_creates_a_project_in_the_pages_and_its_member_starts_a_session(enclave, browser):
    registry = f"{enclave.url}/services/enclave-registry/"
    admin = _sign_in(browser, enclave, "carol")
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
    expect(admin.locator("#error")).to_contain_text("dataset '../ds-imaging'")
    admin.go_back()
    admin.fill("#grant-dataset input[name=dataset]", "ds-imaging")
    admin.get_by_role("button", name="Grant dataset").click()
    expect(admin.locator("#datasets")).to_contain_text("ds-imaging")

    member = _sign_in(browser, enclave, "erin")
    expect(member.locator("#enclave-projects")).to_contain_text("Made in the browser")
    member.click("#start-web-made")
    member.get_by_role("button", name="Start").click()
    member.wait_for_url(f"{enclave.url}/user/erin/web-made/lab*", timeout=90_000)
    expect(member.locator("#jp-main-dock-panel")).to_be_visible(timeout=60_000)

    # Removing the member asks first; once confirmed, her session is stopped.
    admin.goto(registry + "projects/web-made")
    admin.get_by_role("link", name="remove").click()
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
            page = _sign_in(browser, enclave, checker)
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
        researcher = _sign_in(browser, enclave, "quinn")
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
