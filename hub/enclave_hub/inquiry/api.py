"""The inquiry portal's JSON API, beside its pages and described by OpenAPI
(`api/openapi.json`): the catalogue, one dataset's data dictionary, and counts of persons."""

from __future__ import annotations

import asyncio

from tornado import web

from ..core.service_auth import JSONAPI, openapi_frame
from .access import InquiryHandler
from .counts import KINDS, Criteria, CriteriaError

# What an application says: the project asked for, its datasets and members, why, until when.
APPLICATION_FIELDS = ("project_id", "title", "datasets", "members", "justification", "ends")


class InquiryAPIHandler(JSONAPI, InquiryHandler):
    pass


class CatalogueAPI(InquiryAPIHandler):
    @web.authenticated
    async def get(self) -> None:
        self.finish(await asyncio.to_thread(catalogue_view, self.settings))


class DatasetAPI(InquiryAPIHandler):
    @web.authenticated
    async def get(self, dataset_id: str) -> None:
        self.finish(await self.described(dataset_id))


class CountsAPI(InquiryAPIHandler):
    @web.authenticated
    async def post(self) -> None:
        try:
            criteria = Criteria.parse(self.json_body().get("criteria", {}))
        except CriteriaError as error:
            raise web.HTTPError(400, str(error)) from None
        shown = await self.counted(criteria)
        self.finish({"criteria": criteria.as_dict(), **shown.as_dict()})


class ApplicationsAPI(InquiryAPIHandler):
    @web.authenticated
    def get(self) -> None:
        self.finish({"applications": self.my_applications()})

    @web.authenticated
    async def post(self) -> None:
        body = self.json_body()
        fields = {name: body.get(name) for name in APPLICATION_FIELDS}
        if fields["project_id"] is None:
            fields["project_id"] = body.get("project")
        for name in ("datasets", "members"):
            if not isinstance(fields[name] or [], list):
                raise web.HTTPError(400, f"{name}: a list")
            fields[name] = fields[name] or []
        self.set_status(201)
        self.finish(await self.apply(fields))


class OpenAPIDocument(InquiryAPIHandler):
    @web.authenticated
    def get(self) -> None:
        self.finish(openapi_document(self.settings["prefix"]))


def catalogue_view(settings: dict) -> dict:
    """Every dataset's summary, and how many persons have each combination of kinds of data
    (each count as the portal may show it)."""
    disclosure = settings["disclosure"]
    combinations = settings["counts"].kind_combinations()
    return {
        "datasets": settings["catalogue"].datasets(),
        "kinds": KINDS,
        "combinations": [
            {"kinds": list(kinds), "persons": disclosure.shown(n).as_dict()}
            for kinds, n in combinations.items()
        ],
    }


def openapi_document(prefix: str) -> dict:
    text = {"type": "string"}
    concepts = {"type": "array", "items": {"type": "integer"}, "description": "OMOP concept ids"}
    age = {"type": ["integer", "null"], "minimum": 0}
    shown = {
        "type": "object",
        "properties": {
            "count": {"type": ["integer", "null"], "description": "rounded; null when fewer"},
            "text": text,
            "fewer_than": {"type": ["integer", "null"]},
        },
    }
    refused = {
        "400": {"description": "bad criteria; the error names the field"},
        "403": {"description": "not a member of the portal's groups"},
    }
    schemas = {
        "Criteria": {
            "type": "object",
            "description": "persons with any of each domain's concepts (or a "
            "descendant), of the age and sex, who have every kind of data named",
            "properties": {
                "conditions": concepts,
                "drugs": concepts,
                "measurements": concepts,
                "age_min": age,
                "age_max": age,
                "sex": {"enum": ["female", "male", None]},
                "kinds": {"type": "array", "items": {"enum": list(KINDS)}},
            },
        },
        "ShownCount": shown,
        "Application": {
            "type": "object",
            "required": list(APPLICATION_FIELDS),
            "properties": {
                "project_id": {"type": "string", "description": "the project's id, if approved"},
                "title": text,
                "datasets": {"type": "array", "items": text},
                "members": {"type": "array", "items": text, "description": "besides you"},
                "justification": text,
                "ends": {"type": "string", "format": "date", "description": "requested end"},
            },
        },
    }
    paths = {
        "/catalogue": {
            "get": {
                "summary": "every dataset, and persons by combination of kinds of data",
                "responses": {"200": {"description": "the catalogue"}, **refused},
            }
        },
        "/datasets/{dataset}": {
            "parameters": [{"name": "dataset", "in": "path", "required": True, "schema": text}],
            "get": {
                "summary": "one dataset and its data dictionary",
                "responses": {
                    "200": {"description": "the dataset"},
                    "404": {"description": "no such dataset"},
                    **refused,
                },
            },
        },
        "/applications": {
            "get": {
                "summary": "your applications for access, newest first, with their status "
                "and, when rejected, the reason",
                "responses": {"200": {"description": "the applications"}, **refused},
            },
            "post": {
                "summary": "apply for a project: datasets, members, justification, end",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Application"}}
                    },
                },
                "responses": {
                    "201": {"description": "the application, submitted"},
                    "409": {"description": "the project id is taken"},
                    **refused,
                },
            },
        },
        "/counts": {
            "post": {
                "summary": "how many persons meet the criteria (rounded; a small count "
                "as 'fewer than N'); recorded, and limited per person per minute",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "properties": {
                                    "criteria": {"$ref": "#/components/schemas/Criteria"}
                                },
                            }
                        }
                    },
                },
                "responses": {
                    "200": {
                        "description": "the count as it may be shown",
                        "content": {
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/ShownCount"}
                            }
                        },
                    },
                    "429": {"description": "past the person's queries per minute"},
                    "503": {"description": "the audit log could not record the query"},
                    **refused,
                },
            }
        },
    }
    return openapi_frame("Enclave data inquiry", prefix, schemas, paths)


def api_handlers(prefix: str) -> list[tuple]:
    return [
        (prefix + "api/openapi.json", OpenAPIDocument),
        (prefix + "api/catalogue", CatalogueAPI),
        (prefix + r"api/datasets/([^/]+)", DatasetAPI),
        (prefix + "api/counts", CountsAPI),
        (prefix + "api/applications", ApplicationsAPI),
    ]
