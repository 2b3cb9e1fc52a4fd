"""Who calls the package index: notebook sessions only, each by its own token.

`pip` cannot send a header of its own, so the token also comes as the password of HTTP Basic
authentication (the session's index URL carries it; the user name is not read). Whoever
presents it, the caller is the session the hub says the token belongs to: its user and project.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from collections.abc import Callable

from tornado import web

from ..core.hub_api import session_server
from ..core.package_allowances import PackageAllowances
from ..core.service_auth import ReadableErrors, ServiceAuth, registry_refusals
from ..core.services import PACKAGES


def presented_token(authorization: str) -> str | None:
    """The token of an Authorization header: `token T`, `Bearer T` or Basic with password T."""
    scheme, _, value = authorization.strip().partition(" ")
    value = value.strip()
    if scheme.lower() in ("token", "bearer"):
        return value or None
    if scheme.lower() == "basic":
        try:
            _, _, password = base64.b64decode(value, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return password or None
    return None


class SessionHandler(ReadableErrors, ServiceAuth, web.RequestHandler):
    """A request by a notebook session; `self.user` and `self.project` say whose."""

    user: str
    project: str

    @property
    def allowances(self) -> PackageAllowances:
        return self.settings["allowances"]

    def set_default_headers(self) -> None:
        self.set_header("X-Content-Type-Options", "nosniff")

    def write_error(self, status_code: int, **kwargs) -> None:
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.finish(self.error_message(**kwargs) + "\n")

    def check_xsrf_cookie(self) -> None:
        """No cookies here: every call carries its token."""

    async def prepare(self) -> None:
        token = presented_token(self.request.headers.get("Authorization", ""))
        if token is None:
            self.set_header("WWW-Authenticate", 'Basic realm="enclave-packages"')
            raise web.HTTPError(401, "the package index answers sessions, with their token")
        model = await self.hub_auth.user_for_token(token, sync=False)
        if not model or PACKAGES.access_scope not in model.get("scopes", []):
            raise web.HTTPError(403, "this token may not use the package index")
        server = session_server(model)
        if server is None:
            raise web.HTTPError(
                403, "the package index answers notebook sessions, with their own token"
            )
        self.user, self.project = server

    async def act(self, operation: Callable[..., object], *args) -> object:
        """Run an operation on the allowances off the event loop, refusals as HTTP errors."""
        with registry_refusals():
            return await asyncio.to_thread(operation, *args)
