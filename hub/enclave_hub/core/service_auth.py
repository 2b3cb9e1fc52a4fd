"""Signing users in to a hub-side service's pages through the hub (OAuth), as JupyterHub does
for its services. Each service keeps its own `HubOAuth` client in its application settings."""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import os
from collections.abc import Callable, Iterator

from jupyterhub.services.auth import HubOAuth, HubOAuthCallbackHandler, HubOAuthenticated
from tornado import web
from tornado.log import app_log

from . import validation
from .hub_api import session_server
from .registry import DatabaseUnavailable, NotFound, RegistryError
from .services import Service
from .site_config import SiteConfig


class ServiceAuth:
    """The application's own HubOAuth client (not the process-wide default instance)."""

    @property
    def hub_auth(self) -> HubOAuth:
        return self.settings["hub_auth"]


class OAuthCallback(ServiceAuth, HubOAuthCallbackHandler):
    """Where the hub sends a user back after signing in."""


# The services' pages run no script and load nothing from elsewhere, and nothing may frame them.
SERVICE_PAGE_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'none'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)


class ReadableErrors:
    """Errors in words a user can act on: an HTTPError's own message, else the status's. The
    database's outage is a 503 with its own message wherever it comes from."""

    def error_message(self, **kwargs) -> str:
        error = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(error, web.HTTPError) and error.log_message:
            return error_text(error)
        if isinstance(error, DatabaseUnavailable):
            return str(error)
        return self._reason

    def send_error(self, status_code: int = 500, **kwargs) -> None:
        if isinstance(kwargs.get("exc_info", (None, None, None))[1], DatabaseUnavailable):
            status_code = 503
        super().send_error(status_code, **kwargs)

    def log_exception(self, kind, value, traceback) -> None:
        if isinstance(value, DatabaseUnavailable):  # a line, not a traceback, for each refusal
            app_log.warning("%s %s refused: %s", self.request.method, self.request.path, value)
            return
        super().log_exception(kind, value, traceback)


class SignedInHandler(ReadableErrors, ServiceAuth, HubOAuthenticated, web.RequestHandler):
    """A page or API call of a user the hub let in to this service."""

    def set_default_headers(self) -> None:
        self.set_header("Content-Security-Policy", SERVICE_PAGE_POLICY)
        self.set_header("X-Content-Type-Options", "nosniff")

    def check_xsrf_cookie(self) -> None:
        """Forms posted from the signed-in pages carry the XSRF token; calls with a token in
        the Authorization header (which no other site can make a browser send) need none.
        Decided before the user is looked up, which is when tornado checks."""
        if self.request.headers.get("Authorization"):
            return
        super().check_xsrf_cookie()


def presented_token(authorization: str) -> str | None:
    """The token of an Authorization header: `token T`, `Bearer T` or Basic with password T
    (for clients such as pip, which send no header of their own)."""
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
    """A call by a notebook session, with its own token; `self.user` and `self.project` say
    whose session it is, as the hub says (never as the caller says)."""

    user: str
    project: str

    @property
    def service(self) -> Service:
        return self.settings["service"]

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
            self.set_header("WWW-Authenticate", f'Basic realm="{self.service.name}"')
            raise web.HTTPError(401, f"{self.service.name} answers sessions, with their token")
        model = await self.hub_auth.user_for_token(token, sync=False)
        if not model or self.service.access_scope not in model.get("scopes", []):
            raise web.HTTPError(403, f"this token may not use {self.service.name}")
        server = session_server(model)
        if server is None:
            raise web.HTTPError(
                403, f"{self.service.name} answers notebook sessions, with their own token"
            )
        self.user, self.project = server

    async def act(self, operation: Callable[..., object], *args) -> object:
        """Run a registry operation off the event loop, its refusals as HTTP errors."""
        with registry_refusals():
            return await asyncio.to_thread(operation, *args)


@contextlib.contextmanager
def registry_refusals() -> Iterator[None]:
    """The registry's refusals as HTTP errors: bad input 400, unknown 404, a conflict 409, the
    database unavailable 503."""
    try:
        yield
    except validation.InvalidInput as error:
        raise web.HTTPError(400, str(error)) from None
    except NotFound as error:
        raise web.HTTPError(404, str(error)) from None
    except DatabaseUnavailable as error:
        raise web.HTTPError(503, str(error)) from None
    except RegistryError as error:
        raise web.HTTPError(409, str(error)) from None


def error_text(error: web.HTTPError) -> str:
    """An HTTPError's message as written: Tornado keeps it as a format string, with '%'
    doubled when it has no arguments."""
    return error.log_message % error.args


def service_app(
    site: SiteConfig, service: Service, api_token: str, handlers: list, **settings
) -> web.Application:
    """A service's web application: its handlers and the hub's sign-in callback under its
    prefix, its own OAuth client at the hub (registered there under the service's name) and a
    cookie secret of this process's own. `settings` adds the service's objects."""
    hub_auth = HubOAuth(
        api_token=api_token,
        api_url=site.hub_api_url,
        base_url=service.prefix,
        oauth_client_id=f"service-{service.name}",
        access_scopes={service.access_scope},
    )
    return web.Application(
        [*handlers, (service.prefix + "oauth_callback", OAuthCallback)],
        site=site,
        service=service,
        prefix=service.prefix,
        hub_auth=hub_auth,
        cookie_secret=os.urandom(32),
        **settings,
    )


def openapi_frame(title: str, prefix: str, schemas: dict, paths: dict) -> dict:
    """A service's OpenAPI 3.1 document: its API under `<prefix>api`, called with a hub token
    in the Authorization header."""
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": "1"},
        "servers": [{"url": f"{prefix}api"}],
        "components": {
            "securitySchemes": {
                "hubToken": {"type": "apiKey", "in": "header", "name": "Authorization"}
            },
            "schemas": schemas,
        },
        "security": [{"hubToken": []}],
        "paths": paths,
    }


class JSONAPI:
    """What a service's REST API handlers share: errors as `{"error": ...}`, JSON bodies."""

    def write_error(self, status_code: int, **kwargs) -> None:
        self.set_header("Content-Type", "application/json")
        self.finish({"error": self.error_message(**kwargs)})

    def json_body(self) -> dict:
        """The request's body, which must be a JSON object (400 otherwise)."""
        try:
            body = json.loads(self.request.body or b"{}")
        except ValueError:
            raise web.HTTPError(400, "the body is not JSON") from None
        if not isinstance(body, dict):
            raise web.HTTPError(400, "the body must be a JSON object")
        return body
