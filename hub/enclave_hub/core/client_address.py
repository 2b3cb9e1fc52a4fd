"""Where a request came from, as recorded in the audit log.

The proxy reports each browser's address by appending it to `X-Forwarded-For`; everything else
in a request's headers (`X-Real-Ip`, earlier `X-Forwarded-For` entries) is written by the
client and believed from no one. The socket's peer is read from the connection itself, so the
answer holds whether or not the server was told to trust forwarded headers (the hub is).
"""

from __future__ import annotations

import ipaddress

from tornado.httputil import HTTPServerRequest


def socket_peer(request: HTTPServerRequest) -> str:
    """The address at the other end of the connection."""
    context = getattr(request.connection, "context", None)
    address = getattr(context, "address", None)
    if isinstance(address, tuple) and address:
        return str(address[0])
    return getattr(context, "_orig_remote_ip", None) or request.remote_ip or ""


def client_address(request: HTTPServerRequest, proxy_address: str) -> str:
    """The caller's address: the proxy's report of its peer when the proxy sent the request,
    the socket's peer otherwise."""
    peer = socket_peer(request)
    if peer != proxy_address:
        return peer
    reported = request.headers.get("X-Forwarded-For", "").rsplit(",", 1)[-1].strip()
    try:
        return str(ipaddress.ip_address(reported))
    except ValueError:
        return peer
