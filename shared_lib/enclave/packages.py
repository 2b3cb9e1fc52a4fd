"""Asking for a Python package, from a notebook session.

    enclave.request_package("lifelines", "survival curves for the cohort paper")
    enclave.package_requests()     # each with its status and the admin's answer

A session's pip installs from Enclave's package index only, and only the names the project may
install. An admin answers a request in the registry's pages; once it is approved,
`pip install lifelines` (or `%pip install lifelines`) works in the project's sessions. Each
dependency the project does not have yet needs allowing too: ask for them in the same way.
"""

from __future__ import annotations

from .session_services import call

URL_VARIABLE = "ENCLAVE_PACKAGES_URL"


class PackageRequestError(RuntimeError):
    """The request was not made; the message says why."""


def request_package(name: str, reason: str) -> dict:
    """Ask that the package `name` be allowed in this session's project, saying why."""
    return call(
        URL_VARIABLE,
        "package index",
        PackageRequestError,
        "api/requests",
        method="POST",
        json={"name": name, "reason": reason},
    )


def package_requests() -> list[dict]:
    """This session user's package requests in the project, newest first, with the answers."""
    return call(URL_VARIABLE, "package index", PackageRequestError, "api/requests")["requests"]
