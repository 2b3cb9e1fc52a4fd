"""A cluster's dashboard, for the session that owns the cluster and no one else.

dask-gateway would route `/clusters/<name>/` on its HTTP proxy to the dashboard with no check
but the cluster's name. Enclave does not add that route; the dashboard is served here instead,
on the gateway's API, to a token of the cluster's own session, HTTP and websocket alike. The
session's notebook server relays it to the user's browser (`enclave_hub.singleuser.dask_dashboard`),
so the dashboard is reached only through the user's authenticated server.
"""

from __future__ import annotations

import asyncio

from aiohttp import WSMsgType, web
from dask_gateway_server.routes import api_handler

from ..core.services import DASHBOARD_HEADERS, DASK_DASHBOARD_PATH

ROUTE = DASK_DASHBOARD_PATH + "/{cluster_name}/{path:.*}"


@api_handler(user_authenticated=True)
async def dashboard(request: web.Request) -> web.StreamResponse:
    backend = request.app["backend"]
    name = request.match_info["cluster_name"]
    found = backend.dashboard_of(name)
    if found is None or not request["user"].has_permissions(found[0]):
        raise web.HTTPNotFound(reason=f"no dashboard of cluster {name} for this session")
    target = f"{found[1]}/{request.match_info['path']}"
    if request.query_string:
        target += f"?{request.query_string}"
    if request.headers.get("Upgrade", "").lower() == "websocket":
        return await _relay_websocket(request, backend.session, target)
    async with backend.session.get(target, allow_redirects=False) as answer:
        headers = {key: answer.headers[key] for key in DASHBOARD_HEADERS if key in answer.headers}
        return web.Response(body=await answer.read(), status=answer.status, headers=headers)


async def _relay_websocket(request: web.Request, session, target: str) -> web.WebSocketResponse:
    # Subprotocols carry the dashboard's session token (bokeh): passed on both ways.
    asked = request.headers.get("Sec-WebSocket-Protocol", "")
    protocols = tuple(p.strip() for p in asked.split(",") if p.strip())
    outside = web.WebSocketResponse(protocols=protocols[:1])
    await outside.prepare(request)
    url = target.replace("http://", "ws://", 1)
    async with session.ws_connect(url, protocols=protocols) as inside:
        relays = [
            asyncio.ensure_future(_pump(outside, inside)),
            asyncio.ensure_future(_pump(inside, outside)),
        ]
        await asyncio.wait(relays, return_when=asyncio.FIRST_COMPLETED)
        for relay in relays:
            relay.cancel()
    await outside.close()
    return outside


async def _pump(source, sink) -> None:
    async for message in source:
        if message.type == WSMsgType.TEXT:
            await sink.send_str(message.data)
        elif message.type == WSMsgType.BINARY:
            await sink.send_bytes(message.data)
        else:
            return


def add_dashboard_route(app: web.Application) -> None:
    app.router.add_route("GET", ROUTE, dashboard)
