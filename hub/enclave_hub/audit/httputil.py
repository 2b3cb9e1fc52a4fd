"""Who is calling the audit service: the token they present and the address they come from."""

from __future__ import annotations

from tornado import web


def request_token(handler: web.RequestHandler) -> str:
    """The token of an `Authorization: token ...` (or `Bearer ...`) header, or ''."""
    header = handler.request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() in ("token", "bearer") else ""


def client_address(handler: web.RequestHandler, proxy_address: str) -> str:
    """The caller's address; the proxy's forwarded-for header is believed from the proxy only.

    Sessions connect directly, so a header they set cannot change the address recorded.
    """
    peer = handler.request.remote_ip or ""
    if peer == proxy_address:
        forwarded = handler.request.headers.get("X-Forwarded-For", "")
        if forwarded:
            return forwarded.split(",")[-1].strip()
    return peer
