"""The inquiry portal's pages: the catalogue, one dataset's data dictionary, and the cohort
count form, in the hub's look."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tornado import web

from ..core.pages import FramedPages, page_templates
from .access import InquiryHandler
from .api import catalogue_view
from .counts import DOMAINS, KINDS, Criteria, CriteriaError

PAGES = page_templates(Path(__file__).with_name("templates"))
SEXES = ("", "female", "male")
FIELDS = (*DOMAINS, "age_min", "age_max", "sex")


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
    ]
