"""Enclave's services as the hub knows them: the name each is registered under, its URL prefix
and the scope a token needs to reach it. The hub, the services and the sessions all use these."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Service:
    """A service registered at the hub."""

    name: str

    @property
    def prefix(self) -> str:
        return f"/services/{self.name}/"

    @property
    def access_scope(self) -> str:
        return f"access:services!service={self.name}"


# Where the hub serves its own pages and API.
HUB_PREFIX = "/hub/"

REGISTRY = Service("enclave-registry")
AUDIT = Service("enclave-audit")
AIRLOCK = Service("enclave-airlock")
INQUIRY = Service("enclave-inquiry")
PACKAGES = Service("enclave-packages")
JOBS = Service("enclave-jobs")
DASK_GATEWAY = Service("dask-gateway")

# Where the Dask gateway serves a cluster's dashboard: <path>/<cluster name>/<dashboard path>.
DASK_DASHBOARD_PATH = "/api/enclave/dashboard"
# Where processes send audit events.
AUDIT_EVENTS_PATH = AUDIT.prefix + "api/events"
# What the Dask dashboard relays (the gateway's and each session's) pass on of an answer.
DASHBOARD_HEADERS = ("Content-Type", "Location", "Cache-Control", "Last-Modified", "ETag")
