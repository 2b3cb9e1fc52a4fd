"""The data inquiry portal in a real browser: a researcher of no project finds it in the top
bar, browses the catalogue and a dataset's data dictionary, counts a cohort (a condition, then
the same with "has a CT or MR series"), seeing a rounded count and "fewer than 10", and
applies for a project; an admin approves it in the registry's pages; the researcher starts a
session in the new project and reads the granted data there."""

from __future__ import annotations

import json
from datetime import date, timedelta

import pytest
from browser_harness import sign_in
from inquiry_data import DIABETES, KEY, persons_table, write_records
from person_data import MR_SERIES, quiet, require_person_data, write_manifest
from playwright.sync_api import expect

from enclave.omop.ingest import ingest_omop
from enclave.persons import SourceManifest
from enclave.volumes.ingest import ingest_dicom
from enclave_harness import HubAPI, create_api_token, login, run_in_kernel, session_url
from enclave_hub.core.services import REGISTRY

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

OFFSET = 2_100_000_000  # local concepts of this test alone
RECORDS, IMAGES = "ds-web-emr", "ds-web-mr"
PROJECT = "diabetes-imaging"
ENDS = (date.today() + timedelta(days=60)).isoformat()
IN_SESSION = f"""
import json
import enclave
cdm = enclave.open_omop("{RECORDS}/cdm")
(series,) = enclave.dataset("{IMAGES}").objects
print(json.dumps({{
    "datasets": enclave.datasets(),
    "persons": cdm.execute("SELECT count(*) FROM person").fetchone()[0],
    "volume": list(enclave.open_volume("{IMAGES}/" + series).shape),
}}))
"""


def test_a_researcher_browses_the_catalogue_and_counts_a_cohort(enclave, browser, tmp_path):
    require_person_data()
    root = enclave.site.data_root
    records = write_records(tmp_path / "emr", persons_table(count=60, offset=OFFSET))
    assert not ingest_omop(records, RECORDS, root, KEY, "cdm", False, quiet)[0].error
    manifest = SourceManifest(write_manifest(tmp_path / "mr.csv", [("dicom2nifti", "P1")]))
    done = ingest_dicom(MR_SERIES, IMAGES, root, KEY, manifest=manifest, show_progress=False)
    assert not done[0].error

    page = sign_in(browser, enclave, "nina")
    page.get_by_role("link", name="Data inquiry").click()
    expect(page.locator("h1")).to_have_text("The commons' data")
    row = page.locator("#datasets tr", has_text=RECORDS)
    expect(row).to_contain_text("about 60")
    expect(page.locator("#combinations")).to_contain_text("medical records + a CT or MR series")

    row.get_by_role("link", name=RECORDS).click()
    expect(page.locator("#omop-tables")).to_contain_text("person")
    expect(page.locator("#top-conditions")).to_contain_text("Type 2 diabetes mellitus")

    page.get_by_role("link", name="Count a cohort").click()
    page.fill("#in-conditions", str(DIABETES + OFFSET))
    page.get_by_role("button", name="Count persons").click()
    expect(page.locator("#result")).to_contain_text("about 20")
    expect(page.locator("#in-conditions")).to_have_value(str(DIABETES + OFFSET))
    page.check("#kind-volume")
    page.get_by_role("button", name="Count persons").click()
    expect(page.locator("#result")).to_contain_text("fewer than 10")

    page.fill("#in-age_min", "90")
    page.fill("#in-age_max", "20")
    page.get_by_role("button", name="Count persons").click()
    expect(page.locator(".form-problem")).to_contain_text("age_min: above age_max")
    page.screenshot(path=tmp_path / "inquiry.png")

    _apply(page, tmp_path)
    _approve(sign_in(browser, enclave, "carol"), enclave)
    page.get_by_role("link", name="My applications").click()
    expect(page.locator("#applications tr", has_text=PROJECT)).to_contain_text("approved")
    _start_and_read(page, enclave)


def _apply(page, tmp_path) -> None:
    """nina applies for PROJECT with both datasets; a missing justification is named first."""
    page.get_by_role("link", name="Apply for access").click()
    page.fill("#in-apply-project_id", PROJECT)
    page.fill("#in-apply-title", "Diabetes and imaging")
    page.fill("#in-apply-ends", ENDS)
    page.check(f"#dataset-{RECORDS}")
    page.check(f"#dataset-{IMAGES}")
    page.fill("#in-apply-justification", "  ")
    page.locator("#in-apply-justification").evaluate("e => e.removeAttribute('required')")
    page.get_by_role("button", name="Send application").click()
    expect(page.locator(".form-problem")).to_contain_text("justification: required")
    expect(page.locator("#in-apply-project_id")).to_have_value(PROJECT)
    expect(page.locator(f"#dataset-{IMAGES}")).to_be_checked()
    page.fill("#in-apply-justification", "Whether imaging findings differ with diabetes.")
    page.get_by_role("button", name="Send application").click()
    expect(page.locator("#notice")).to_contain_text(f"Your application for {PROJECT} was sent")
    expect(page.locator("#applications tr", has_text=PROJECT)).to_contain_text("submitted")
    page.screenshot(path=tmp_path / "applications.png")


def _approve(admin, enclave) -> None:
    admin.goto(f"{enclave.url}{REGISTRY.prefix}applications")
    row = admin.locator("#applications tr", has_text=PROJECT)
    expect(row).to_contain_text("nina")
    row.get_by_role("button", name=f"Approve {PROJECT}").click()
    expect(admin.locator("#notice")).to_contain_text(f"project {PROJECT} is open")
    admin.goto(f"{enclave.url}{REGISTRY.prefix}projects/{PROJECT}")
    expect(admin.locator("#members")).to_contain_text("nina")
    expect(admin.locator("#datasets")).to_contain_text(IMAGES)


def _start_and_read(page, enclave) -> None:
    """From the home page, a session in the new project; the granted data read in it."""
    page.goto(f"{enclave.url}/hub/home")
    expect(page.locator("#enclave-projects")).to_contain_text("Diabetes and imaging")
    page.click(f"#start-{PROJECT}")
    page.get_by_role("button", name="Start").click()
    page.wait_for_url(f"{enclave.url}/user/nina/{PROJECT}/lab*", timeout=90_000)
    expect(page.locator("#jp-main-dock-panel")).to_be_visible(timeout=60_000)
    client, _ = login(enclave, "nina")
    api = HubAPI(enclave, create_api_token(client, "nina"))
    try:
        read = run_in_kernel(session_url(enclave, "nina", PROJECT), api.token, IN_SESSION, 120)
    finally:
        api.stop_session("nina", PROJECT)
    found = json.loads(read.strip().splitlines()[-1])
    assert found["datasets"] == sorted([RECORDS, IMAGES])
    assert found["persons"] == 60
    assert found["volume"] == [4, 256, 256]
