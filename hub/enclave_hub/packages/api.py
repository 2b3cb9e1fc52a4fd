"""The package index's REST API (JSON), for sessions, with their own token.

- `POST api/requests` `{"name": ..., "reason": ...}`: ask that a package be allowed in the
  session's project; answers 201 with the request. The registry's admins decide.
- `GET api/requests`: the session user's requests in the project, newest first, with the
  answers given.

Errors are `{"error": "..."}` with 400 (bad input), 403, 404, 409 (allowed or asked already) or
503 (the database is unavailable).
"""

from __future__ import annotations

from ..core.service_auth import JSONAPI
from .access import SessionHandler


class RequestsAPI(JSONAPI, SessionHandler):
    async def get(self) -> None:
        found = await self.act(self.allowances.requests_of, self.user, self.project)
        self.finish({"requests": found})

    async def post(self) -> None:
        body = self.json_body()
        made = await self.act(
            self.allowances.request,
            self.user,
            self.project,
            str(body.get("name", "")),
            str(body.get("reason", "")),
        )
        self.set_status(201)
        self.finish(made)


def api_handlers(prefix: str) -> list[tuple]:
    return [(prefix + "api/requests", RequestsAPI)]
