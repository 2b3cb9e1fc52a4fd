"""The inquiry portal's pages: the catalogue, one dataset's data dictionary, and the cohort
count form, in the hub's look."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tornado import web

from ..core.pages import FormRefused, FramedPages, page_templates
from ..core.service_auth import error_text
from .access import InquiryHandler
from .api import catalogue_view
from .counts import DOMAINS, KINDS, Criteria, CriteriaError

PAGES = page_templates(Path(__file__).with_name("templates"))
SEXES = ("", "female", "male")
FIELDS = (*DOMAINS, "age_min", "age_max", "sex")
FORM_FIELDS = ("project_id", "title", "members", "justification", "ends")


class PageHandler(FramedPages, InquiryHandler):
    pages = PAGES
    section = "Data inquiry"


class CataloguePage(PageHandler):
    @web.authenticated
    async def get(self) -> None:
        self.render_page("catalogue.html", **await asyncio.to_thread(catalogue_view, self.settings))


class DatasetPage(PageHandler):
    @web.authenticated
    async def get(self, dataset_id: str) -> None:
        self.render_page("dataset.html", dataset=await self.described(dataset_id), kinds=KINDS)


class ApplyPage(PageHandler):
    """The application form; submitted, the person's applications with a notice."""

    @web.authenticated
    async def get(self) -> None:
        await self._form(None)

    @web.authenticated
    async def post(self) -> None:
        values = {name: self.get_body_argument(name, "").strip() for name in FORM_FIELDS}
        fields = {
            "project_id": values["project_id"],
            "title": values["title"],
            "datasets": self.get_body_arguments("datasets"),
            "members": [m for m in values["members"].replace(",", " ").split() if m],
            "justification": values["justification"],
            "ends": values["ends"],
        }
        values["datasets"] = fields["datasets"]
        try:
            application = await self.apply(fields)
        except web.HTTPError as error:
            if error.status_code not in (400, 409, 503):
                raise
            status = 503 if error.status_code == 503 else 400  # 503: sent again once it is back
            await self._form(FormRefused("apply", values, {"form": error_text(error)}), status)
            return
        self.notify(
            f"Your application for {application['project']} was sent. An admin decides; "
            "the answer shows here."
        )
        self.redirect(f"{self.hub_auth.base_url}applications")

    async def _form(self, refused: FormRefused | None, status: int = 200) -> None:
        catalogue = await asyncio.to_thread(self.settings["catalogue"].datasets)
        chosen = refused.values.get("datasets", []) if refused else self.get_arguments("dataset")
        self.render_page("apply.html", status, refused=refused, datasets=catalogue, chosen=chosen)


class ApplicationsPage(PageHandler):
    @web.authenticated
    def get(self) -> None:
        self.render_page("applications.html", applications=self.my_applications())


class CohortPage(PageHandler):
    @web.authenticated
    def get(self) -> None:
        self.render_page("cohort.html", values={}, error=None, shown=None, **_choices())

    @web.authenticated
    async def post(self) -> None:
        values = {name: self.get_body_argument(name, "").strip() for name in FIELDS}
        values["kinds"] = self.get_body_arguments("kinds")
        try:
            criteria = Criteria.parse(values)
        except CriteriaError as error:
            self.render_page(
                "cohort.html", 400, values=values, error=str(error), shown=None, **_choices()
            )
            return
        shown = await self.counted(criteria)
        self.render_page("cohort.html", values=values, error=None, shown=shown, **_choices())


def _choices() -> dict:
    return {"kinds": KINDS, "sexes": SEXES, "domains": list(DOMAINS)}


def page_handlers(prefix: str) -> list[tuple]:
    return [
        (prefix, CataloguePage),
        (prefix + r"datasets/([^/]+)", DatasetPage),
        (prefix + "cohorts", CohortPage),
        (prefix + "apply", ApplyPage),
        (prefix + "applications", ApplicationsPage),
    ]
