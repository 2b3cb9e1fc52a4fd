"""In a real browser: sign in on the provider's page, start a session, reach JupyterLab."""

from __future__ import annotations

import shutil

import pytest
from playwright.sync_api import expect, sync_playwright

from enclave_harness import HubAPI, create_api_token, login

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


def test_a_researcher_logs_in_in_a_browser_and_reaches_jupyterlab(enclave, tmp_path):
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=_chromium(), headless=True, args=CHROMIUM_FLAGS
        )
        try:
            page = browser.new_page()
            page.goto(f"{enclave.url}/hub/login")
            page.get_by_role("button", name="Sign in with").click()

            # The development provider's own login page.
            page.wait_for_url(f"{enclave.idp_url}/oauth2/authorize*")
            page.fill("input[name=sub]", "bob")
            page.get_by_role("button", name="Authorize").click()

            page.wait_for_url(f"{enclave.url}/hub/home")
            expect(page.locator("#enclave-projects")).to_contain_text("Cardiac MRI study")
            page.click("#start-cardiac-mri")
            expect(page.locator(".enclave-project")).to_contain_text("Cardiac MRI study")
            page.get_by_role("button", name="Start").click()

            page.wait_for_url(f"{enclave.url}/user/bob/cardiac-mri/lab*", timeout=90_000)
            expect(page.locator("#jp-main-dock-panel")).to_be_visible(timeout=60_000)
            page.screenshot(path=tmp_path / "jupyterlab.png")
        finally:
            browser.close()

    client, _ = login(enclave, "bob")
    HubAPI(enclave, create_api_token(client, "bob")).stop_session("bob", "cardiac-mri")
