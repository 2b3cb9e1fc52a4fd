"""Who asks the Dask gateway: the notebook session whose token it is.

The gateway's principal is a session, `<user>/<project>`, not a person: the gateway lets a
principal list, reach and stop only the clusters it made, so a user's clusters in one project
are out of reach of their sessions in another, and of everyone else. Only a notebook
server's own token names one session; a person's API token does not, and is refused.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web
from dask_gateway_server.auth import JupyterHubAuthenticator, unauthorized
from dask_gateway_server.models import User

from ..core.hub_api import session_server
from ..core.services import DASK_GATEWAY


@dataclass(frozen=True)
class Principal:
    """One user's session in one project, as the gateway names it."""

    user: str
    project: str

    @property
    def name(self) -> str:
        return f"{self.user}/{self.project}"

    @classmethod
    def parse(cls, name: str) -> Principal:
        user, _, project = name.rpartition("/")
        return cls(user, project)


class SessionAuthenticator(JupyterHubAuthenticator):
    """Admits a notebook session's token that carries the gateway's access scope."""

    async def authenticate(self, request: web.Request) -> User:
        token = self.get_token(request)
        if token is None:
            raise unauthorized("jupyterhub")
        reply = await self.session.get(
            f"{self.jupyterhub_api_url}/user",
            headers={"Authorization": f"token {token}"},
            ssl=self.ssl_context,
        )
        if reply.status >= 400:
            raise unauthorized("jupyterhub")
        model = await reply.json()
        if DASK_GATEWAY.access_scope not in model.get("scopes", []):
            raise web.HTTPForbidden(
                reason=f"this token lacks the scope {DASK_GATEWAY.access_scope}"
            )
        server = session_server(model)
        if server is None:
            raise web.HTTPForbidden(
                reason="Dask clusters are started from a notebook session, with its own token"
            )
        principal = Principal(*server)
        return User(principal.name, groups=[principal.project])
