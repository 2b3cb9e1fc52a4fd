"""Loaded into each session's Jupyter server: jobs.

`<server>/enclave/jobs/` is the session's job page: submit a notebook or script with a profile
and parameters, and see the project's jobs with each waiting one's place, as
`enclave.submit_job` and `enclave.jobs` do; cancel one's own. JupyterLab's Run menu opens it
("Run as a job"): the spawner writes `lab_menu` for the session's own address into its
Jupyter configuration.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

from jupyter_server.base.handlers import JupyterHandler
from jupyter_server.utils import url_path_join
from tornado import web

from enclave.jobs import JobError, cancel_job, job_profiles, jobs, submit_job

from .airlock_page import PAGES, session_frame
from .lab_look import page_menu

PAGE = "enclave/jobs/"
EMPTY_FORM = {"path": "", "profile": "", "parameters": "{}"}


def lab_menu(server_url: str) -> dict:
    """JupyterLab's Run menu with "Run as a job" for the session at `server_url`."""
    return page_menu("jp-mainmenu-run", 99, server_url, PAGE, "Run as a job…")


def _parameters(text: str) -> dict:
    try:
        found = json.loads(text or "{}")
    except ValueError as error:
        raise JobError(f"Parameters: not JSON ({error})") from None
    if not isinstance(found, dict):
        raise JobError('Parameters: a JSON object, such as {"alpha": 0.05}')
    return found


class JobsPage(JupyterHandler):
    """The form, and the project's jobs."""

    def _page(self, form: dict, message: str = "", made: str = "") -> str:
        try:
            listed, profiles = jobs(), job_profiles()
        except JobError as error:
            listed, profiles, message = [], [], message or str(error)
        return PAGES.get_template("jobs.html").render(
            frame=session_frame(self, "Jobs"),
            user=os.environ.get("JUPYTERHUB_USER"),
            form=form,
            message=message,
            made=made,
            jobs=listed,
            profiles=profiles,
            xsrf=self.xsrf_form_html(),
        )

    async def _render(self, form: dict, message: str = "", made: str = "", status=200) -> None:
        page = await asyncio.to_thread(self._page, form, message, made)
        self.set_status(status)
        self.finish(page)

    @web.authenticated
    async def get(self) -> None:
        await self._render(EMPTY_FORM)

    @web.authenticated
    async def post(self) -> None:
        form = {
            "path": self.get_body_argument("path", "").strip(),
            "profile": self.get_body_argument("profile", ""),
            "parameters": self.get_body_argument("parameters", "{}"),
        }
        home = Path(os.environ.get("HOME", "~")).expanduser()
        try:
            made = await asyncio.to_thread(
                submit_job,
                home / form["path"],
                form["profile"] or None,
                _parameters(form["parameters"]),
            )
        except JobError as error:
            await self._render(form, str(error), "", 400)
            return
        await self._render(EMPTY_FORM, "", f"Job #{made['id']} ({made['name']}) is queued.")


class CancelJob(JobsPage):
    """Cancelling one's own job, then the page again."""

    @web.authenticated
    async def post(self) -> None:
        number = self.get_body_argument("job", "")
        try:
            cancelled = await asyncio.to_thread(cancel_job, int(number))
        except (JobError, ValueError) as error:
            await self._render(EMPTY_FORM, f"Job {number}: {error}", "", 400)
            return
        done = "cancelled" if cancelled["status"] == "cancelled" else "being stopped"
        await self._render(EMPTY_FORM, "", f"Job #{cancelled['id']} is {done}.")


def _load_jupyter_server_extension(serverapp) -> None:
    base = serverapp.web_app.settings["base_url"]
    serverapp.web_app.add_handlers(
        ".*$",
        [
            (url_path_join(base, PAGE), JobsPage),
            (url_path_join(base, PAGE, "cancel"), CancelJob),
        ],
    )


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": __name__}]
