"""The airlock's REST API (JSON).

- `POST api/requests` (a session's token): multipart form data with the files to release as
  `output` parts and the checkers' supporting files as `supporting` parts (each part's file
  name is the file's path in the session), `justification`, `environment` (JSON: what the
  session runs) and, for a revision, `revises` (the request's id). Answers 201 with the request.
- `GET api/requests`, `GET api/requests/<id>`: what the caller may see.
- `POST api/requests/<id>/reviews` (a person's token): `{"decision": "approve" | "reject",
  "comment": "..."}`.
- `GET api/desks/<user>` (the hub, for its home page, with the airlock's own service token,
  which only the hub and the airlock hold): `{"awaiting": n, "requests": [...]}`, how many
  requests await the person's review and their own requests.

Errors are `{"error": "..."}` with 400 (bad input), 403 (not allowed), 404 (no such request, or
none the caller may see), 409 (not in a state for that step) or 503 (the database is
unavailable: nothing was done, and the call may be made again once it is back).
"""

from __future__ import annotations

import asyncio
import hmac
import io
import json

from tornado import web

from ..core.service_auth import JSONAPI
from .access import AirlockHandler, Caller
from .checks.files import OUTPUT, SUPPORTING
from .exports import Submission, Upload


class AirlockAPIHandler(JSONAPI, AirlockHandler):
    async def visible_request(self, caller: Caller, request_id: str) -> dict:
        """One request the caller may see; a session sees only its user's in its project."""
        found = await self.act(
            self.airlock.show, caller.name, int(request_id), caller.platform_reader
        )
        if caller.is_session and (
            found["requester"] != caller.name or found["project"] != caller.project
        ):
            raise web.HTTPError(404, f"there is no request {request_id} of this session")
        return found


class RequestsAPI(AirlockAPIHandler):
    @web.authenticated
    async def get(self) -> None:
        caller = self.caller()
        found = await self.act(self.airlock.visible_to, caller.name, caller.platform_reader)
        if caller.is_session:
            found = [
                r for r in found if r["requester"] == caller.name and r["project"] == caller.project
            ]
        self.finish({"requests": found})

    @web.authenticated
    async def post(self) -> None:
        caller = self.session()
        uploads = [
            Upload(part.filename, role, io.BytesIO(part.body))
            for role in (OUTPUT, SUPPORTING)
            for part in self.request.files.get(role, [])
        ]
        try:
            environment = json.loads(self.get_body_argument("environment", "{}"))
        except ValueError:
            raise web.HTTPError(400, "environment is not JSON") from None
        revises = self.get_body_argument("revises", "").strip()
        if revises and not revises.isdigit():
            raise web.HTTPError(400, f"revises {revises!r} is not a request number")
        job = self.get_body_argument("job", "").strip()
        if job and not job.isdigit():
            raise web.HTTPError(400, f"job {job!r} is not a job number")
        submission = Submission(
            requester=caller.name,
            project=caller.project,
            justification=self.get_body_argument("justification", ""),
            uploads=uploads,
            session=await asyncio.to_thread(
                self.settings["hub_sessions"].run_of, caller.name, caller.project
            ),
            environment=environment,
            revises=int(revises) if revises else None,
            job=int(job) if job else None,
        )
        self.set_status(201)
        self.finish(await self.act(self.airlock.submit, submission))


class RequestAPI(AirlockAPIHandler):
    @web.authenticated
    async def get(self, request_id: str) -> None:
        self.finish(await self.visible_request(self.caller(), request_id))


class ReviewsAPI(AirlockAPIHandler):
    @web.authenticated
    async def post(self, request_id: str) -> None:
        caller = self.person()
        body = self.json_body()
        self.set_status(201)
        self.finish(
            await self.act(
                self.airlock.review,
                caller.name,
                int(request_id),
                body.get("decision"),
                body.get("comment", ""),
            )
        )


class DeskAPI(JSONAPI, web.RequestHandler):
    """A person's desk at the airlock, for the hub's home page."""

    def error_message(self, **kwargs) -> str:
        return self._reason

    async def get(self, username: str) -> None:
        given = self.request.headers.get("Authorization", "").removeprefix("token ")
        if not hmac.compare_digest(given.encode(), self.settings["hub_auth"].api_token.encode()):
            raise web.HTTPError(403)
        found = await asyncio.to_thread(self.settings["airlock"].visible_to, username)
        self.finish(
            {
                "awaiting": sum(1 for r in found if r["awaits_you"]),
                "requests": [r for r in found if r["requester"] == username],
            }
        )


def api_handlers(prefix: str) -> list[tuple]:
    number = r"([0-9]{1,12})"
    return [
        (prefix + "api/requests", RequestsAPI),
        (prefix + f"api/requests/{number}", RequestAPI),
        (prefix + f"api/requests/{number}/reviews", ReviewsAPI),
        (prefix + r"api/desks/([^/]+)", DeskAPI),
    ]
