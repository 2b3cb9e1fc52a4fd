"""Loaded into each session's Jupyter server: asking for Python packages.

- `<server>/enclave/packages/` is the session's package request page: name a package, say why,
  and see the answers, as `enclave.request_package` and `enclave.package_requests` do.
  JupyterLab's Help menu opens it ("Request a package"): the spawner writes `lab_menu` for
  the session's own address into its Jupyter configuration.
- At start it makes the folder pip installs into (`core.session_packages`), so that a package
  installed later is found by kernels already running.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from jupyter_server.base.handlers import JupyterHandler
from jupyter_server.utils import url_path_join
from tornado import web

from enclave.packages import PackageRequestError, package_requests, request_package

from ..core.session_packages import user_site_packages
from .airlock_page import PAGES, session_frame
from .lab_look import page_menu

PAGE = "enclave/packages/"
EMPTY_FORM = {"name": "", "reason": ""}


def lab_menu(server_url: str) -> dict:
    """JupyterLab's Help menu with "Request a package" for the session at `server_url`."""
    return page_menu("jp-mainmenu-help", 1, server_url, PAGE, "Request a package…")


class PackagesPage(JupyterHandler):
    """The form, and this user's requests in the project with their answers."""

    def _page(self, form: dict, message: str = "", made: dict | None = None) -> str:
        try:
            requests = package_requests()
        except PackageRequestError as error:
            requests, message = [], message or str(error)
        return PAGES.get_template("packages.html").render(
            frame=session_frame(self, "Request a package"),
            form=form,
            message=message,
            made=made,
            requests=requests,
            xsrf=self.xsrf_form_html(),
        )

    async def _render(self, form: dict, message: str = "", made=None, status=200) -> None:
        page = await asyncio.to_thread(self._page, form, message, made)
        self.set_status(status)
        self.finish(page)

    @web.authenticated
    async def get(self) -> None:
        await self._render(EMPTY_FORM)

    @web.authenticated
    async def post(self) -> None:
        form = {
            "name": self.get_body_argument("name", ""),
            "reason": self.get_body_argument("reason", ""),
        }
        try:
            made = await asyncio.to_thread(request_package, form["name"], form["reason"])
        except PackageRequestError as error:
            await self._render(form, str(error), None, 400)
            return
        await self._render(EMPTY_FORM, "", made)


def _load_jupyter_server_extension(serverapp) -> None:
    home = os.environ.get("HOME")
    if home:
        Path(user_site_packages(home)).mkdir(parents=True, exist_ok=True)
    base = serverapp.web_app.settings["base_url"]
    serverapp.web_app.add_handlers(".*$", [(url_path_join(base, PAGE), PackagesPage)])


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": __name__}]
