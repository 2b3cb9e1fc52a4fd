"""Loaded into each session's Jupyter server: the Dask dashboard of the session's clusters.

`<server>/enclave/dask/clusters/<name>/...` is served to the user the server lets in (the hub
signs them in), by asking the gateway with the session's own token; the gateway answers only for
the session's own clusters (`enclave_hub.dask.dashboard`). Pages and the dashboard's websockets
are relayed alike. The spawner points dask-gateway's dashboard links here.
"""

from __future__ import annotations

import asyncio
import os

from jupyter_server.base.handlers import JupyterHandler
from jupyter_server.utils import url_path_join
from tornado import httpclient, web, websocket

from ..core.services import DASHBOARD_HEADERS, DASK_DASHBOARD_PATH
from . import DASHBOARD_POLICY

# dask-gateway's links are `<public address>/clusters/<name>/status`; the spawner sets the
# public address to the server's prefix joined with this.
PUBLIC_ADDRESS = "enclave/dask"
CLUSTER = r"([0-9a-f]{32})"


def _gateway_request(cluster: str, path: str, query: str, websocket_url: bool = False):
    url = f"{os.environ['DASK_GATEWAY__ADDRESS']}{DASK_DASHBOARD_PATH}/{cluster}/{path}"
    if query:
        url += f"?{query}"
    if websocket_url:
        url = url.replace("http://", "ws://", 1)
    token = os.environ["JUPYTERHUB_API_TOKEN"]
    return httpclient.HTTPRequest(
        url, headers={"Authorization": f"jupyterhub {token}"}, follow_redirects=False
    )


class DashboardPage(JupyterHandler):
    """A page or resource of the dashboard."""

    @property
    def content_security_policy(self) -> str:
        return DASHBOARD_POLICY

    @web.authenticated
    async def get(self, cluster: str, path: str) -> None:
        request = _gateway_request(cluster, path, self.request.query)
        answer = await httpclient.AsyncHTTPClient().fetch(request, raise_error=False)
        self.set_status(answer.code)
        for key in DASHBOARD_HEADERS:
            if key in answer.headers:
                self.set_header(key, answer.headers[key])
        self.finish(answer.body or b"")


class DashboardSocket(websocket.WebSocketHandler, JupyterHandler):
    """The dashboard's websocket (its plots' updates), relayed both ways."""

    async def get(self, cluster: str, path: str) -> None:
        if self.current_user is None:
            raise web.HTTPError(403)
        # Subprotocols carry the dashboard's session token (bokeh): passed on both ways.
        asked = self.request.headers.get("Sec-WebSocket-Protocol", "")
        self.protocols = [p.strip() for p in asked.split(",") if p.strip()]
        self.inside = await websocket.websocket_connect(
            _gateway_request(cluster, path, self.request.query, websocket_url=True),
            subprotocols=self.protocols,
        )
        await super().get(cluster, path)

    def select_subprotocol(self, subprotocols: list[str]) -> str | None:
        return subprotocols[0] if subprotocols else None

    def open(self, cluster: str, path: str) -> None:
        self.relay = asyncio.ensure_future(self._relay_inside())

    async def _relay_inside(self) -> None:
        while (message := await self.inside.read_message()) is not None:
            await self.write_message(message, binary=isinstance(message, bytes))
        self.close()

    async def on_message(self, message) -> None:
        await self.inside.write_message(message, binary=isinstance(message, bytes))

    def on_close(self) -> None:
        self.inside.close()


def _load_jupyter_server_extension(serverapp) -> None:
    base = url_path_join(serverapp.web_app.settings["base_url"], PUBLIC_ADDRESS, "clusters")
    serverapp.web_app.add_handlers(
        ".*$",
        [
            (url_path_join(base, CLUSTER, r"(.*/ws)"), DashboardSocket),
            (url_path_join(base, CLUSTER, r"(.*)"), DashboardPage),
        ],
    )


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": __name__}]
