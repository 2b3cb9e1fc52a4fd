"""The data inquiry portal in a real browser: a researcher of no project finds it in the top
bar, browses the catalogue and a dataset's data dictionary, and counts a cohort (a condition,
then the same with "has a CT or MR series"), seeing a rounded count and "fewer than 10"."""

from __future__ import annotations

import pytest
from browser_harness import sign_in
from inquiry_data import DIABETES, KEY, persons_table, write_records
from person_data import MR_SERIES, quiet, require_person_data, write_manifest
from playwright.sync_api import expect

from enclave.omop.ingest import ingest_omop
from enclave.persons import SourceManifest
from enclave.volumes.ingest import ingest_dicom

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

OFFSET = 2_100_000_000  # local concepts of this test alone
RECORDS, IMAGES = "ds-web-emr", "ds-web-mr"


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
