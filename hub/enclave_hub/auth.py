"""Login through the site's OpenID Connect provider."""

from __future__ import annotations

from oauthenticator.generic import GenericOAuthenticator
from tornado import web


class EnclaveAuthenticator(GenericOAuthenticator):
    """GenericOAuthenticator that re-checks group membership whenever auth is refreshed.

    OAuthenticator checks `allowed_groups` at login only. A user whom the provider has since
    removed from every allowed group must not keep starting sessions on an old login, so a
    refresh that no longer passes `check_allowed` counts as a failed refresh: with
    `refresh_pre_spawn` and `auth_refresh_strict` the spawn is refused.
    """

    def user_info_to_username(self, user_info):
        if not user_info.get(self.username_claim):
            raise web.HTTPError(
                403,
                f"The identity provider gave no '{self.username_claim}' for this login; "
                "ask its administrator to release that claim to Enclave.",
            )
        return super().user_info_to_username(user_info)

    async def refresh_user(self, user, handler=None, **kwargs):
        auth_model = await super().refresh_user(user, handler, **kwargs)
        if not isinstance(auth_model, dict):
            return auth_model
        if not await self.check_allowed(auth_model["name"], auth_model):
            self.log.warning(
                "User %s is no longer in an allowed group; a fresh login is required", user.name
            )
            return False
        return auth_model
