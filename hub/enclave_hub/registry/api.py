"""The registry's REST API (JSON), described by the OpenAPI document at `api/openapi.json`.

Callers authenticate with a hub token (`Authorization: token ...`) whose owner may use the
service; admins change, auditors read. Errors are `{"error": "..."}` with 400 (bad input),
403 (not allowed), 404 (no such thing), 409 (conflicts with what is there) or 503 (the
database is unavailable: nothing was changed, and the call may be made again once it is back).
"""

from __future__ import annotations

from tornado import web

from enclave.catalog import IDENTIFIER_PATTERN

from ..core.service_auth import JSONAPI, openapi_frame
from ..core.validation import STATUSES
from .access import RegistryHandler


class RegistryAPIHandler(JSONAPI, RegistryHandler):
    def created(self, project: dict) -> None:
        self.set_status(201)
        self.finish(project)


class ProjectsAPI(RegistryAPIHandler):
    @web.authenticated
    def get(self) -> None:
        self.finish({"projects": self.read(self.registry.list_projects)})

    @web.authenticated
    async def post(self) -> None:
        body = self.json_body()
        fields = ("description", "agreement", "starts", "ends", "profile", "egress_allow")
        options = {name: body[name] for name in fields if name in body}
        self.created(
            await self.change(
                self.registry.create_project, body.get("id"), body.get("title"), **options
            )
        )


class ProjectAPI(RegistryAPIHandler):
    @web.authenticated
    def get(self, project: str) -> None:
        self.finish(self.read(self.registry.show, project))

    @web.authenticated
    async def patch(self, project: str) -> None:
        body = self.json_body()
        status = body.pop("status", None)
        if status is not None and status not in STATUSES:
            raise web.HTTPError(400, f"status {status!r} is not one of {', '.join(STATUSES)}")
        result = None
        if body:
            result = await self.change(self.registry.update_project, project, **body)
        if status is not None:
            result = await self.change(self.registry.set_status, project, status)
        self.finish(result or self.read(self.registry.show, project))


class MembersAPI(RegistryAPIHandler):
    @web.authenticated
    async def post(self, project: str) -> None:
        body = self.json_body()
        self.created(
            await self.change(
                self.registry.add_member,
                project,
                body.get("username"),
                body.get("role", "researcher"),
                body.get("expires"),
            )
        )


class MemberAPI(RegistryAPIHandler):
    @web.authenticated
    async def delete(self, project: str, username: str) -> None:
        self.finish(await self.change(self.registry.remove_member, project, username))


class GrantsAPI(RegistryAPIHandler):
    @web.authenticated
    async def post(self, project: str) -> None:
        body = self.json_body()
        self.created(
            await self.change(
                self.registry.grant, project, body.get("dataset"), body.get("expires")
            )
        )


class GrantAPI(RegistryAPIHandler):
    @web.authenticated
    async def delete(self, project: str, dataset: str) -> None:
        self.finish(await self.change(self.registry.revoke, project, dataset))


class OpenAPIDocument(web.RequestHandler):
    def get(self) -> None:
        self.finish(openapi_document(self.settings["prefix"]))


class ApplicationsAPI(RegistryAPIHandler):
    @web.authenticated
    def get(self) -> None:
        self.finish({"applications": self.read(self.settings["applications"].all)})


class DecisionAPI(RegistryAPIHandler):
    @web.authenticated
    async def post(self, number: str, decision: str) -> None:
        applications = self.settings["applications"]
        if decision == "approve":
            self.finish(await self.change(applications.approve, number))
        else:
            reason = self.json_body().get("reason", "")
            self.finish(await self.change(applications.reject, number, reason))


UNAVAILABLE = "the database is unavailable; try again when it is back"


def _operation(summary: str, body: str | None = None, status: str = "200") -> dict:
    operation: dict = {
        "summary": summary,
        "responses": {
            status: {"description": "the project, as it is now"},
            "400": {"description": "bad input; the error names it"},
            "403": {"description": "not an admin (or, for reading, not an auditor)"},
            "404": {"description": "no such project, member or grant"},
            "409": {"description": "conflicts with what is there"},
            "503": {"description": UNAVAILABLE},
        },
    }
    if body is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{body}"}}},
        }
    return operation


def openapi_document(prefix: str) -> dict:
    text = {"type": "string"}
    when = {"type": "string", "description": "ISO 8601 date or time; UTC unless an offset"}
    day = {"type": "string", "format": "date"}
    project_id = {"name": "project", "in": "path", "required": True, "schema": text}
    number = {"name": "number", "in": "path", "required": True, "schema": {"type": "integer"}}
    schemas = {
        "NewProject": {
            "type": "object",
            "required": ["id", "title"],
            "properties": {
                "id": {"type": "string", "pattern": f"^{IDENTIFIER_PATTERN}$"},
                "title": text,
                "description": text,
                "agreement": {"type": "string", "description": "data-use agreement"},
                "starts": day,
                "ends": day,
                "profile": text,
                "egress_allow": {"type": "array", "items": {"type": "string"}},
            },
        },
        "ProjectChange": {
            "type": "object",
            "properties": {
                "title": text,
                "description": text,
                "agreement": text,
                "starts": day,
                "ends": day,
                "profile": text,
                "status": {"enum": list(STATUSES)},
            },
        },
        "NewMember": {
            "type": "object",
            "required": ["username"],
            "properties": {
                "username": text,
                "role": {"enum": ["researcher", "output-checker", "project-admin"]},
                "expires": when,
            },
        },
        "Rejection": {
            "type": "object",
            "required": ["reason"],
            "properties": {"reason": text},
        },
        "NewGrant": {
            "type": "object",
            "required": ["dataset"],
            "properties": {"dataset": text, "expires": when},
        },
    }
    paths = {
        "/projects": {
            "get": _operation("every project"),
            "post": _operation("create a project", "NewProject", "201"),
        },
        "/projects/{project}": {
            "parameters": [project_id],
            "get": _operation("one project, its members and grants"),
            "patch": _operation("edit, suspend, archive or reopen", "ProjectChange"),
        },
        "/projects/{project}/members": {
            "parameters": [project_id],
            "post": _operation("add a member", "NewMember", "201"),
        },
        "/projects/{project}/members/{username}": {
            "parameters": [
                project_id,
                {"name": "username", "in": "path", "required": True, "schema": text},
            ],
            "delete": _operation("end a membership now"),
        },
        "/projects/{project}/datasets": {
            "parameters": [project_id],
            "post": _operation("grant a dataset", "NewGrant", "201"),
        },
        "/applications": {
            "get": {
                "summary": "every application for access, those waiting first",
                "responses": {"200": {"description": "the applications"}},
            }
        },
        "/applications/{number}/approve": {
            "parameters": [number],
            "post": {
                "summary": "open the project applied for, its memberships and grants",
                "responses": {
                    "200": {"description": "the application, approved"},
                    "403": {"description": "not an admin"},
                    "404": {"description": "no such application"},
                    "409": {"description": "already decided, or the project id is taken"},
                    "503": {"description": UNAVAILABLE},
                },
            },
        },
        "/applications/{number}/reject": {
            "parameters": [number],
            "post": {
                "summary": "refuse it, with the reason its applicant reads",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Rejection"}}
                    },
                },
                "responses": {
                    "200": {"description": "the application, rejected"},
                    "400": {"description": "no reason"},
                    "403": {"description": "not an admin"},
                    "404": {"description": "no such application"},
                    "409": {"description": "already decided"},
                    "503": {"description": UNAVAILABLE},
                },
            },
        },
        "/projects/{project}/datasets/{dataset}": {
            "parameters": [
                project_id,
                {"name": "dataset", "in": "path", "required": True, "schema": text},
            ],
            "delete": _operation("withdraw a dataset grant now"),
        },
    }
    return openapi_frame("Enclave project registry", prefix, schemas, paths)


def api_handlers(prefix: str) -> list[tuple]:
    segment = r"([^/]+)"
    return [
        (prefix + "api/openapi.json", OpenAPIDocument),
        (prefix + "api/projects", ProjectsAPI),
        (prefix + f"api/projects/{segment}", ProjectAPI),
        (prefix + f"api/projects/{segment}/members", MembersAPI),
        (prefix + f"api/projects/{segment}/members/{segment}", MemberAPI),
        (prefix + f"api/projects/{segment}/datasets", GrantsAPI),
        (prefix + f"api/projects/{segment}/datasets/{segment}", GrantAPI),
        (prefix + "api/applications", ApplicationsAPI),
        (prefix + r"api/applications/(\d+)/(approve|reject)", DecisionAPI),
    ]
