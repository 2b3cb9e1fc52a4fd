"""Login through the site's OpenID Connect provider, with every login and logout audited.

A login is complete only once `login.ok` is on disk: when the audit log cannot be written the
login is refused (fail closed). Every failed login is reported to the audit service, which
records the first few per address and user each minute and counts the rest.
"""

from __future__ import annotations

import asyncio
import json

from jupyterhub import orm
from jupyterhub.apihandlers.users import UserServerAPIHandler, UserTokenListAPIHandler
from oauthenticator.generic import GenericOAuthenticator
from oauthenticator.oauth2 import OAuthCallbackHandler, OAuthLogoutHandler
from tornado import web
from tornado.httpclient import AsyncHTTPClient, HTTPClientError
from traitlets import Any, Unicode, default

from .core.audit_client import AuditRefused
from .core.client_address import client_address
from .core.identities import Identities, IdentityRefused
from .core.registry import DatabaseUnavailable
from .hub_access import REFLECT_ROUTE, ReflectAccessHandler

CLAIMED_NAME = "enclave_claimed_name"


class AuditedCallbackHandler(OAuthCallbackHandler):
    """The provider's redirect back to the hub: any refusal here is a failed login."""

    async def get(self):
        try:
            await super().get()
        except web.HTTPError as error:
            await self.authenticator.audit.record_best_effort(
                self.log,
                actor=getattr(self, CLAIMED_NAME, "") or "(unknown)",
                action="login.failed",
                target="hub",
                outcome="denied",
                reason=error.log_message or error.reason or f"HTTP {error.status_code}",
                source=self.authenticator.source(self.request),
            )
            raise


class AuditedLogoutHandler(OAuthLogoutHandler):
    async def default_handle_logout(self):
        # Recorded first: the hub forgets who is logging out as it clears the login cookie.
        user = self.current_user
        if user is not None:
            await self.authenticator.audit.record_best_effort(
                self.log,
                actor=user.name,
                action="logout",
                target="hub",
                outcome="ok",
                source=self.authenticator.source(self.request),
            )
        await super().default_handle_logout()


class AuditedTokenListHandler(UserTokenListAPIHandler):
    """Creating a token (POST /hub/api/users/:name/tokens), recorded as `token.create`.

    A token whose creation cannot be recorded is revoked at once.
    """

    _written: str | bytes | dict | None = None

    def write(self, chunk):
        self._written = chunk
        super().write(chunk)

    async def post(self, user_name):
        await super().post(user_name)
        if self.get_status() != 201 or self._written is None:
            return
        model = self._written if isinstance(self._written, dict) else json.loads(self._written)
        requester = self.current_user
        try:
            await self.authenticator.audit.record(
                actor=requester.name if requester is not None else "(unknown)",
                action="token.create",
                target=f"token {model['id']} of {user_name}",
                outcome="ok",
                note=model.get("note"),
                source=self.authenticator.source(self.request),
            )
        except AuditRefused as error:
            token = self.db.query(orm.APIToken).filter_by(id=int(model["id"][1:])).first()
            if token is not None:
                self.db.delete(token)
                self.db.commit()
            self.clear()
            raise web.HTTPError(503, f"No token was created: {error}") from None


class AuditedServerHandler(UserServerAPIHandler):
    """Stopping a session (DELETE /hub/api/users/:name/servers/:project): when anyone but its
    owner asks (an operator, a service), it is recorded first as `session.stop.request` under
    the requester's own name, and refused when it cannot be; the session's end then says who."""

    async def delete(self, user_name, server_name=""):
        requester = self.current_user
        user = self.find_user(user_name)
        running = (
            user is not None
            and server_name in user.orm_spawners
            and user.spawners[server_name].active
        )
        if requester is not None and requester.name != user_name and running:
            try:
                await self.authenticator.audit.record(
                    actor=requester.name,
                    action="session.stop.request",
                    target=f"{user_name}/{server_name}",
                    project=server_name or None,
                    outcome="ok",
                    source=self.authenticator.source(self.request),
                )
            except AuditRefused as error:
                raise web.HTTPError(503, f"The session was not stopped: {error}") from None
            user.spawners[server_name].stop_reason = f"stopped by {requester.name}"
        await super().delete(user_name, server_name)


# Requests the hub has in flight to the identity provider at once. Every session start checks
# its user there first: behind tornado's shared client, ten at a time, starts of 50 users at
# once waited in its queue until they failed.
PROVIDER_REQUESTS = 100


class EnclaveAuthenticator(GenericOAuthenticator):
    """GenericOAuthenticator that audits logins, re-checks groups whenever auth is refreshed,
    and gives each user the groups and roles of their projects (`hub_access`).

    OAuthenticator checks `allowed_groups` at login only. A user whom the provider has since
    removed from every allowed group must not keep starting sessions on an old login, so a
    refresh that no longer passes `check_allowed` counts as a failed refresh: with
    `refresh_pre_spawn` and `auth_refresh_strict` the spawn is refused.
    """

    callback_handler = AuditedCallbackHandler
    logout_handler = AuditedLogoutHandler
    audit = Any(help="the AuditClient that records logins").tag(config=True)
    identities = Any(help="the Identities that bind usernames to subjects")
    issuer = Unicode(help="the identity provider's issuer, which names its subjects").tag(
        config=True
    )
    proxy_address = Unicode(
        help="the address the proxy reaches the hub from; its X-Forwarded-For is believed"
    ).tag(config=True)
    access = Any(help="the HubAccess that turns projects into groups and roles").tag(config=True)

    @default("identities")
    def _identities_default(self) -> Identities:
        registry = self.access.registry  # its database holds who is who
        return Identities(registry.sessions, registry.record)

    @default("http_client")
    def _http_client_default(self) -> AsyncHTTPClient:
        return AsyncHTTPClient(force_instance=True, max_clients=PROVIDER_REQUESTS)

    def source(self, request) -> str:
        """Where a request to the hub came from, whatever headers its sender wrote."""
        return client_address(request, self.proxy_address)

    def get_handlers(self, app):
        # The authenticator's handlers come before the hub's own: the first replaces its
        # token-creation API with the audited one.
        return [
            *super().get_handlers(app),
            (r"/api/users/([^/]+)/tokens", AuditedTokenListHandler),
            (r"/api/users/([^/]+)/servers/([^/]*)", AuditedServerHandler),
            (REFLECT_ROUTE, ReflectAccessHandler),
        ]

    def with_project_access(self, auth_model: dict) -> dict:
        """The auth model with the user's groups and roles from the registry added; 503 while
        the registry's database is unavailable (nothing is granted on stale access)."""
        try:
            reflected = self.access.model(auth_model["name"], auth_model.get("groups") or ())
        except DatabaseUnavailable as error:
            raise web.HTTPError(503, str(error)) from None
        return {**auth_model, **reflected}

    def user_info_to_username(self, user_info):
        if not user_info.get(self.username_claim):
            raise web.HTTPError(
                403,
                f"The identity provider gave no '{self.username_claim}' for this login; "
                "ask its administrator to release that claim to Enclave.",
            )
        return super().user_info_to_username(user_info)

    async def authenticate(self, handler, data=None, **kwargs):
        model = await super().authenticate(handler, data, **kwargs)
        if isinstance(model, dict):
            setattr(handler, CLAIMED_NAME, model.get("name"))
        return model

    async def get_authenticated_user(self, handler, data):
        user = await super().get_authenticated_user(handler, data)
        if user is None:
            name = getattr(handler, CLAIMED_NAME, None) or "this user"
            raise web.HTTPError(403, f"{name} is not in a group allowed to use Enclave")
        subject = (user.get("auth_state") or {}).get(self.user_auth_state_key, {}).get("sub")
        if not subject:
            raise web.HTTPError(403, "The identity provider gave no subject ('sub') for this login")
        try:
            await asyncio.to_thread(self.identities.bind, user["name"], self.issuer, str(subject))
            await self.audit.record(
                actor=user["name"],
                action="login.ok",
                target="hub",
                outcome="ok",
                source=self.source(handler.request),
            )
        except IdentityRefused as error:
            raise web.HTTPError(403, f"Sign-in refused: {error}") from None
        except DatabaseUnavailable as error:
            raise web.HTTPError(503, f"Sign-in refused for now: {error}") from None
        except AuditRefused as error:
            raise web.HTTPError(
                503, f"Login is refused because it cannot be audited: {error}"
            ) from None
        return self.with_project_access(user)

    async def refresh_user(self, user, handler=None, **kwargs):
        try:
            auth_model = await super().refresh_user(user, handler, **kwargs)
        except (HTTPClientError, OSError) as error:  # the provider failed, is down or slow
            raise web.HTTPError(
                503,
                f"{user.name}'s identity could not be checked at the identity provider "
                f"({error}): try again shortly.",
            ) from None
        if not isinstance(auth_model, dict):
            return auth_model
        if not await self.check_allowed(auth_model["name"], auth_model):
            self.log.warning("User %s is no longer in an allowed group", user.name)
            await self.withdraw_access(
                user, handler, "removed at the identity provider from every allowed group"
            )
            return False
        return self.with_project_access(auth_model)

    async def withdraw_access(self, user, handler, reason: str) -> None:
        """Stop the user's sessions and delete their API tokens (a failed refresh alone keeps
        token requests working on stale rights); recorded first, and done even when the
        record cannot be written."""
        sessions = [name for name in user.orm_spawners if user.spawners[name].active]
        if not sessions and not user.orm_user.api_tokens:
            return
        await self.audit.record_best_effort(
            self.log,
            actor=user.name,
            action="access.withdrawn",
            target=f"user {user.name}",
            outcome="ok",
            reason=reason,
            detail={"sessions": sessions, "tokens": len(user.orm_user.api_tokens)},
        )
        for name in sessions:
            user.spawners[name].stop_reason = reason
            if handler is not None:
                await handler.stop_single_user(user, name)
            else:
                await user.stop(name)
        for token in list(user.orm_user.api_tokens):
            user.db.delete(token)
        user.db.commit()
