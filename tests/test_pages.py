"""Every page as each role sees it, in Chromium at 1280 px: the frame on each, nothing wider
than the window, no serious or critical accessibility violation under axe-core (run in the
page), plain words on error pages; each role's home; the researcher's way from the session
page to a revised export with its approvals counted; registry forms that keep what was typed.

Screenshots of each page go to `test-output/screenshots/` (kept as the run's artefacts)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import httpx
import pytest
from browser_harness import VIEWPORT, sign_in
from playwright.sync_api import Page, expect

from enclave_harness import (
    HubAPI,
    create_api_token,
    login,
    run_in_kernel,
    session_url,
    set_provider_claims,
)

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

ROOT = Path(__file__).resolve().parents[1]
SCREENSHOTS = ROOT / "test-output" / "screenshots"
AXE = Path(sys.prefix, "lib", "node_modules", "axe-core", "axe.min.js")
# What no page may show: Python's words for its own failures, and the hub's joke.
NOT_FOR_PEOPLE = re.compile(r"\bNone\b|Exception|Traceback|Error\(|lots of moons")
AXE_RUN = """async () => {
  const found = await axe.run(document, {resultTypes: ["violations"]});
  return found.violations
    .filter(v => v.impact === "serious" || v.impact === "critical")
    .map(v => `${v.id} (${v.impact}): ${v.nodes.slice(0, 3).map(n => n.target).join(", ")}`);
}"""
# The page's own words: without what it shows of people's data (recorded code and events).
OWN_WORDS = """() => {
  const page = document.body.cloneNode(true);
  page.querySelectorAll("pre, .recorded").forEach(shown => shown.remove());
  return page.innerText;
}"""
AIRLOCK = "/services/enclave-airlock/"
REGISTRY = "/services/enclave-registry/"
AUDIT = "/services/enclave-audit/"


def check_page(page: Page, name: str) -> None:
    """The page shows the frame, fits 1280 px, passes axe-core, says nothing a person cannot
    use; its screenshot is kept."""
    expect(page.locator("nav.enclave-frame")).to_be_visible()
    expect(page.locator("nav.enclave-frame .navbar-brand")).to_have_text("Enclave")
    assert page.title().endswith("Enclave"), (name, page.title())
    widths = page.evaluate(
        "[document.documentElement.scrollWidth, document.documentElement.clientWidth]"
    )
    assert widths[0] <= widths[1], f"{name} is {widths[0]} px wide in a {widths[1]} px window"
    text = page.evaluate(OWN_WORDS)
    found = NOT_FOR_PEOPLE.search(text)
    assert not found, (name, text[max(0, found.start() - 300) : found.end() + 100])
    page.evaluate(AXE.read_text() + "\n;0")
    assert page.evaluate(AXE_RUN) == [], name
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SCREENSHOTS / f"{name}.png", full_page=True)


def visit(page: Page, url: str, name: str, status: int = 200) -> Page:
    answer = page.goto(url)
    assert answer is not None and answer.status == status, (name, answer and answer.status)
    check_page(page, name)
    return page


# Each role's pages: (person, role, [(path, name)]); the home page is checked first.
ROLE_PAGES = [
    (
        "alice",
        "researcher",
        [
            ("/hub/spawn/alice/cancer-imaging", "session-page"),
            (AIRLOCK, "airlock"),
            ("/hub/token", "tokens"),
        ],
    ),
    (
        "carol",
        "admin",
        [
            (REGISTRY, "registry"),
            (f"{REGISTRY}projects/cancer-imaging", "project"),
            (f"{REGISTRY}projects/cancer-imaging/confirm?action=suspend&target=x", "confirm"),
            (f"{REGISTRY}packages", "packages"),
            (AIRLOCK, "airlock"),
            ("/hub/admin", "sessions"),
        ],
    ),
    (
        "dave",
        "auditor",
        [
            (AUDIT, "log"),
            (f"{AUDIT}datasets?dataset=ds-imaging", "datasets"),
            (f"{AUDIT}integrity", "integrity"),
            (REGISTRY, "registry"),
        ],
    ),
    ("erin", "checker", [(AIRLOCK, "airlock")]),
]


def test_every_page_of_every_role_is_in_the_frame_fits_and_passes_axe(enclave, browser):
    base = enclave.url
    visitor = browser.new_context(viewport=VIEWPORT).new_page()
    visit(visitor, f"{base}/hub/login", "visitor-sign-in")
    signed_in = {}
    for person, role, pages in ROLE_PAGES:
        page = signed_in[person] = sign_in(browser, enclave, person)
        check_page(page, f"{role}-home")
        for path, name in pages:
            visit(page, base + path, f"{role}-{name}")
    alice, carol, dave = signed_in["alice"], signed_in["carol"], signed_in["dave"]

    # Error pages: in the frame, in plain words, with a next step.
    for page, url, status, name in (
        (alice, f"{base}/hub/no-such-page", 404, "error-unknown-url"),
        (alice, f"{base}{AUDIT}", 403, "error-no-access"),
        (alice, f"{base}{AIRLOCK}requests/999999", 404, "error-no-such-request"),
        (dave, f"{base}{AUDIT}?since=yesterday", 400, "error-bad-date"),
        (carol, f"{base}{REGISTRY}projects/no-such-project", 404, "error-no-project"),
    ):
        visit(page, url, name, status)
        expect(page.locator("#next-step")).to_contain_text("home page")
    expect(dave.locator("#error")).to_contain_text("Since: 'yesterday' is not a date")

    set_provider_claims(enclave, "zed", {"preferred_username": "zed", "groups": ["visitors"]})
    zed = sign_in(browser, enclave, "zed", home=False)
    check_page(zed, "error-no-allowed-group")
    expect(zed.locator("#error")).to_contain_text("zed")
    expect(zed.locator("#next-step")).to_contain_text("sign out")
    expect(zed.get_by_role("link", name="sign out")).to_have_attribute("href", "/hub/logout")


def test_each_role_has_its_home(enclave, browser):
    """A checker sees how many requests await them (as many as the airlock says); admins and
    auditors see their tools, and no "you are in no project"."""
    erin = sign_in(browser, enclave, "erin")
    client, _ = login(enclave, "erin")
    mine = httpx.get(
        f"{enclave.url}{AIRLOCK}api/requests",
        headers={"Authorization": f"token {create_api_token(client, 'erin')}"},
    ).json()["requests"]
    awaiting = sum(1 for r in mine if r["awaits_you"])
    if awaiting:
        expect(erin.locator("#enclave-awaiting strong")).to_have_text(str(awaiting))
    else:
        expect(erin.locator("#enclave-awaiting")).to_contain_text("No export request awaits")

    for person, tools in (("carol", ["Registry", "Sessions"]), ("dave", ["Registry", "Audit"])):
        page = sign_in(browser, enclave, person)
        listed = page.locator("#enclave-tools")
        for tool in tools:
            expect(listed.get_by_role("link", name=tool)).to_be_visible()
        expect(page.locator("#enclave-no-projects")).to_have_count(0)
    expect(page.locator("#enclave-tools").get_by_role("link", name="Audit")).to_have_attribute(
        "href", AUDIT
    )


def test_a_researcher_goes_from_the_session_page_to_a_revised_export(enclave, browser):
    """Start from the session page, see the project in JupyterLab, export one file with one
    supporting file from the tree, see the failed check inline, revise from the page, and
    see one approval of two counted."""
    set_provider_claims(enclave, "uli", {"preferred_username": "uli", "groups": ["researchers"]})
    uli = sign_in(browser, enclave, "uli")
    uli.click("#start-pages-study")
    expect(uli.locator(".enclave-project")).to_contain_text("Pages under test")
    expect(uli.locator("#session-datasets")).to_have_text("ds-imaging")
    expect(uli.locator("#session-limits")).to_contain_text("CPU")
    check_page(uli, "researcher-start")
    uli.get_by_role("button", name="Start").click()
    uli.wait_for_url(f"{enclave.url}/user/uli/pages-study/lab*", timeout=90_000)
    expect(uli.locator("#jp-main-dock-panel")).to_be_visible(timeout=60_000)
    expect(uli).to_have_title(re.compile("Pages under test · Enclave"), timeout=30_000)
    expect(uli.get_by_text("Project: Pages under test")).to_be_visible()

    client, _ = login(enclave, "uli")
    api = HubAPI(enclave, create_api_token(client, "uli"))
    url = session_url(enclave, "uli", "pages-study")
    specs = httpx.get(
        f"{url}api/kernelspecs", headers={"Authorization": f"token {api.token}"}, timeout=30
    ).json()
    assert set(specs["kernelspecs"]) <= {"enclave-python", "enclave-python-gpu", "enclave-r"}, specs
    assert specs["default"] == "enclave-python"
    run_in_kernel(
        url,
        api.token,
        "import pathlib\n"
        "pathlib.Path('results').mkdir(exist_ok=True)\n"
        "pathlib.Path('results/ages.csv').write_text('band,n\\n40-49,31\\n50-59,8\\n')\n"
        "pathlib.Path('results/ages.contributors.csv').write_text("
        "'band,total,top1,top2\\n40-49,31,6,5\\n50-59,8,2,2\\n')\n",
    )

    uli.goto(f"{url}enclave/airlock/")
    check_page(uli, "researcher-export-page")
    uli.get_by_label("Release results/ages.csv").check()
    uli.get_by_label("Send results/ages.contributors.csv to the checkers only").check()
    uli.fill("#justification", "Ages of the cohort, Table 2")
    uli.get_by_role("button", name="Request the export").click()
    expect(uli.locator("#outcome-status")).to_have_text("checks-failed")
    expect(uli.locator("#outcome .findings li.fail").first).to_contain_text("8")
    check_page(uli, "researcher-export-failed")

    run_in_kernel(
        url,
        api.token,
        "import pathlib\n"
        "pathlib.Path('results/ages.csv').write_text('band,n\\n40-49,31\\n50-59,<10\\n')\n",
    )
    uli.locator("#revise-link").click()
    expect(uli.locator("#revising")).to_be_visible()
    expect(uli.get_by_label("Release results/ages.csv")).to_be_checked()
    expect(uli.locator("#justification")).to_have_value("Ages of the cohort, Table 2")
    uli.get_by_role("button", name="Send the revision").click()
    expect(uli.locator("#outcome-status")).to_have_text("in-review")
    request_id = uli.locator("#outcome a").first.inner_text().lstrip("#")

    erin = sign_in(browser, enclave, "erin")
    expect(erin.locator("#enclave-awaiting")).to_contain_text("await")
    erin.goto(f"{enclave.url}{AIRLOCK}requests/{request_id}")
    expect(erin.locator("#approvals")).to_have_text("Approvals 0 of 2")
    check_page(erin, "checker-request")
    erin.get_by_role("link", name="results/ages.contributors.csv").click()
    expect(erin.locator("#snapshot")).to_contain_text("40-49")
    check_page(erin, "checker-snapshot-table")
    erin.go_back()
    erin.fill("#review-comment", "Suppressed below ten; fine")
    erin.get_by_role("button", name="Approve").click()
    expect(erin.locator("#notice")).to_contain_text("approve")
    expect(erin.locator("#approvals")).to_have_text("Approvals 1 of 2")
    uli.goto(f"{url}enclave/airlock/")
    expect(uli.locator("#requests .approvals").first).to_have_text("approvals 1 of 2")

    # A job from the session's job page: refused with the reason, then queued and listed.
    run_in_kernel(url, api.token, "open('count.py', 'w').write('print(31 + 8)')\n")
    uli.goto(f"{url}enclave/jobs/")
    check_page(uli, "researcher-jobs-page")
    uli.fill("#path", "count.sh")
    uli.get_by_role("button", name="Submit the job").click()
    expect(uli.locator("#message")).to_contain_text("No such file")
    expect(uli.locator("#path")).to_have_value("count.sh")
    uli.fill("#path", "count.py")
    uli.get_by_role("button", name="Submit the job").click()
    expect(uli.locator("#made")).to_contain_text("(count.py) is queued")
    expect(uli.locator("#jobs")).to_contain_text("count.py")
    check_page(uli, "researcher-jobs-submitted")
    api.stop_session("uli", "pages-study")

    # The auditor reads the session's timeline.
    dave = sign_in(browser, enclave, "dave")
    dave.goto(f"{enclave.url}{AUDIT}?user=uli&type=session.start")
    dave.locator("tr.record a").first.click()
    expect(dave.locator("h1")).to_contain_text("of uli")
    check_page(dave, "auditor-session")


def test_a_registry_form_keeps_what_was_typed_and_names_the_bad_field(enclave, browser):
    carol = sign_in(browser, enclave, "carol")
    carol.goto(f"{enclave.url}{REGISTRY}")
    form = carol.locator("#create-project")
    form.locator("input[name=id]").fill("kept-values")
    form.locator("input[name=title]").fill("Values are kept")
    form.locator("input[name=agreement]").fill("DUA-77")
    form.locator("input[name=profile]").fill("no-such-profile")
    form.get_by_role("button", name="Create project").click()
    expect(form.locator("input[name=profile]")).to_have_attribute("aria-invalid", "true")
    expect(form.locator(".invalid-feedback")).to_contain_text("no profile 'no-such-profile'")
    expect(form.locator("input[name=title]")).to_have_value("Values are kept")
    expect(form.locator("input[name=agreement]")).to_have_value("DUA-77")
    expect(form.locator("input[name=id]")).to_have_value("kept-values")
    check_page(carol, "admin-form-refused")

    form.locator("input[name=profile]").fill("default")
    form.locator("input[name=id]").fill("50%off")
    form.get_by_role("button", name="Create project").click()
    expect(form.locator("input[name=id]")).to_have_attribute("aria-invalid", "true")
    expect(form.locator(".invalid-feedback")).to_contain_text("project id '50%off' is not valid")
    expect(form.locator(".invalid-feedback")).not_to_contain_text("%%")
    form.locator("input[name=id]").fill("kept-values")
    form.get_by_role("button", name="Create project").click()
    expect(carol.locator("#notice")).to_contain_text("kept-values was created")

    members = carol.locator("#add-member")
    members.locator("input[name=username]").fill("never-seen")
    members.get_by_role("button", name="Add member").click()
    expect(members.locator(".form-warning")).to_contain_text("No one has signed in as 'never-seen'")
    expect(carol.locator("#members")).not_to_contain_text("never-seen")
    expect(members.locator("input[name=username]")).to_have_value("never-seen")
    members.get_by_role("button", name="Add anyway").click()
    expect(carol.locator("#members")).to_contain_text("never-seen")
    expect(carol.locator("#notice")).to_contain_text("never-seen was added")
