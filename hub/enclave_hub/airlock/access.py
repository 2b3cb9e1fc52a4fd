"""Who calls the airlock service, and what each caller may do.

- A notebook session, with its server's own token: it submits requests from its project and
  reads its user's requests there. Nothing else: a session never reviews or downloads.
- A person, signed in through the hub (or with their own API token): they read their own
  requests and download their releases; output checkers read and review their projects'
  requests; admins and auditors read every request.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from tornado import web

from ..core.hub_api import session_server
from ..core.registry import DatabaseUnavailable
from ..core.service_auth import SignedInHandler
from .exports import Airlock, AirlockError, InvalidRequest, NotAllowed, NotFound


@dataclass(frozen=True)
class Caller:
    name: str
    project: str | None  # the session's project; None for a person
    platform_reader: bool = False  # an admin or auditor, who reads every request

    @property
    def is_session(self) -> bool:
        return self.project is not None


class AirlockHandler(SignedInHandler):
    """A request to the airlock service by a signed-in person or a session."""

    @property
    def airlock(self) -> Airlock:
        return self.settings["airlock"]

    def caller(self) -> Caller:
        model = self.current_user
        server = session_server(model)
        if server is not None:
            return Caller(name=server[0], project=server[1])
        role = self.settings["site"].platform_role(model.get("groups") or ())
        return Caller(name=model["name"], project=None, platform_reader=role is not None)

    def person(self) -> Caller:
        """The caller, who must be a person: sessions only submit and read."""
        caller = self.caller()
        if caller.is_session:
            raise web.HTTPError(
                403, "a notebook session may only submit export requests and read its own"
            )
        return caller

    def session(self) -> Caller:
        caller = self.caller()
        if not caller.is_session:
            raise web.HTTPError(
                403, "export requests are made from a notebook session, with its own token"
            )
        return caller

    async def act(self, operation: Callable[..., object], *args) -> object:
        """Run an airlock operation off the event loop, its refusals as HTTP errors."""
        try:
            return await asyncio.to_thread(operation, *args)
        except InvalidRequest as error:
            raise web.HTTPError(400, str(error)) from None
        except NotAllowed as error:
            raise web.HTTPError(403, str(error)) from None
        except NotFound as error:
            raise web.HTTPError(404, str(error)) from None
        except AirlockError as error:
            raise web.HTTPError(409, str(error)) from None
        except DatabaseUnavailable as error:
            raise web.HTTPError(503, str(error)) from None
