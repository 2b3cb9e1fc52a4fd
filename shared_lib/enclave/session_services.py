"""Calls from a notebook session to Enclave's services (the airlock, the package index), with
the session's own token, which tells the service whose session it is."""

from __future__ import annotations

import os

TIMEOUT = 300.0  # the airlock's checks of a large request take a while


def call(url_variable: str, service: str, error: type[Exception], path: str, **request) -> dict:
    """`path` of the service whose URL is in `url_variable`, as JSON; `error` with the
    service's own message when it refuses or cannot be reached."""
    import httpx

    base = os.environ.get(url_variable)
    token = os.environ.get("JUPYTERHUB_API_TOKEN")
    if not base or not token:
        raise error(f"No {service} is configured: it is reached from an Enclave session")
    headers = {"Authorization": f"token {token}"}
    try:
        reply = httpx.request(
            request.pop("method", "GET"), base + path, headers=headers, timeout=TIMEOUT, **request
        )
    except httpx.HTTPError as failure:
        raise error(f"The {service} at {base} cannot be reached ({failure})") from None
    try:
        body = reply.json()
    except ValueError:
        body = {"error": reply.text[:200]}
    if reply.status_code >= 400:
        raise error(f"The {service} refused: {body.get('error') or reply.reason_phrase}")
    return body
