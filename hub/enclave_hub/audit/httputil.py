"""Who is calling the audit service: the token they present."""

from __future__ import annotations

from tornado import web


def request_token(handler: web.RequestHandler) -> str:
    """The token of an `Authorization: token ...` (or `Bearer ...`) header, or ''."""
    header = handler.request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() in ("token", "bearer") else ""
