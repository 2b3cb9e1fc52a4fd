"""A real browser for the end-to-end tests: Debian's Chromium, headless, driven by Playwright,
and signing in on the development provider's own login page."""

from __future__ import annotations

import shutil

import pytest
from playwright.sync_api import sync_playwright

CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# The width every page must fit without scrolling sideways.
VIEWPORT = {"width": 1280, "height": 900}


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


def sign_in(browser, enclave, username: str, home: bool = True):
    """A fresh browser context at 1280 px, signed in on the development provider's own login
    page; on the hub's home page unless `home` is False (a sign-in the hub refuses)."""
    page = browser.new_context(viewport=VIEWPORT).new_page()
    page.goto(f"{enclave.url}/hub/login")
    page.get_by_role("button", name="Sign in with").click()
    page.wait_for_url(f"{enclave.idp_url}/oauth2/authorize*")
    page.fill("input[name=sub]", username)
    page.get_by_role("button", name="Authorize").click()
    if home:
        page.wait_for_url(f"{enclave.url}/hub/home")
    else:
        page.wait_for_load_state()
    return page
