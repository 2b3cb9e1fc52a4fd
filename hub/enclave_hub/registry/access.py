"""Who may do what in the registry service: admins change, auditors read, no one else enters.

Both come from identity-provider groups (`identity.admin_groups`, `audit.auditor_groups`). The
hub lets only their members sign in to the service at all; the role is checked again here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from tornado import web

from ..core.registry import Registry
from ..core.service_auth import SignedInHandler, registry_refusals


class RegistryHandler(SignedInHandler):
    """A request to the registry service by a signed-in user."""

    @property
    def registry(self) -> Registry:
        return self.settings["registry"]

    def role(self) -> str:
        """'admin' or 'auditor'; anyone else is refused (403)."""
        role = self.settings["site"].platform_role(self.current_user.get("groups") or ())
        if role is None:
            raise web.HTTPError(403, "only admins and auditors may use the project registry")
        return role

    def require_admin(self) -> str:
        """The admin's name (who made the change); auditors and others get 403."""
        if self.role() != "admin":
            raise web.HTTPError(403, "only admins may change the project registry")
        return self.current_user["name"]

    async def change(self, operation: Callable[..., dict], *args, **kwargs) -> dict:
        """Make a change as the signed-in admin, and reconcile before answering: the hub's
        sessions, groups and roles follow it by the time the admin sees the result."""
        actor = self.require_admin()
        with registry_refusals():
            result = await asyncio.to_thread(operation, actor, *args, **kwargs)
        await self.settings["reconciler"].run()
        return result

    def read(self, operation: Callable[..., object], *args) -> object:
        """A reading of the registry by an admin or auditor."""
        self.role()
        with registry_refusals():
            return operation(*args)
