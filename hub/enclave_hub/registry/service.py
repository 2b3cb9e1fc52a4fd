"""The registry service: the admins' REST API and pages, and the reconciler.

It reconciles every `registry.reconcile_interval` seconds and within a second of any change
to the registry, whichever process made it (these pages, the API or `enclave project`).
Listens on loopback; the hub routes `/services/enclave-registry/` to it. Started by `enclave up`
after the audit service and before the hub:
`python -m enclave_hub.registry.service --config <site.yaml>`.
"""

from __future__ import annotations

import asyncio
import time

import httpx
from tornado import httpserver, web

from ..core.applications import Applications
from ..core.audit_client import AuditRefused
from ..core.hub_api import HubSessions
from ..core.package_allowances import PackageAllowances
from ..core.registry import site_registry
from ..core.service_auth import service_app
from ..core.service_process import run_service, stop_signal
from ..core.services import REGISTRY
from ..core.site_config import SiteConfig
from ..core.site_secrets import load_secrets
from .api import api_handlers
from .pages import page_handlers
from .reconciler import reconcile

CHANGE_CHECK_INTERVAL = 1.0  # seconds between looks at the registry's revision


class Reconciler:
    """Runs `reconcile`, then has the hub reflect the registry into its groups and roles; now
    and then, one run at a time, reporting what it did."""

    def __init__(self, site: SiteConfig):
        self.registry = site_registry(site)
        token = load_secrets(site.state_dir).registry_service_token
        self.hub = HubSessions(site.hub_api_url, token)
        self._lock = asyncio.Lock()

    async def run(self) -> None:
        async with self._lock:
            try:
                stopped = await asyncio.to_thread(
                    reconcile, self.registry, self.hub, self.registry.record
                )
                for session, reason in stopped:
                    print(f"Stopped {session.user}/{session.project}: {reason}", flush=True)
                changed = await asyncio.to_thread(self.hub.reflect_access)
            except (httpx.HTTPError, AuditRefused) as error:
                print(f"Reconciling sessions failed, will try again: {error}", flush=True)
                return
            if changed:
                print(f"Project groups and roles changed for {', '.join(changed)}", flush=True)


def make_app(site: SiteConfig, reconciler: Reconciler) -> web.Application:
    secrets = load_secrets(site.state_dir)
    return service_app(
        site,
        REGISTRY,
        secrets.registry_service_token,
        [*api_handlers(REGISTRY.prefix), *page_handlers(REGISTRY.prefix)],
        registry=reconciler.registry,
        applications=Applications(reconciler.registry),
        package_allowances=PackageAllowances(reconciler.registry, site.packages.allow),
        reconciler=reconciler,
        xsrf_cookies=True,
    )


async def serve(site: SiteConfig) -> None:
    reconciler = Reconciler(site)
    server = httpserver.HTTPServer(make_app(site, reconciler))
    # Reached by the hub's proxy alone: on loopback here, in its own pod on Kubernetes.
    server.listen(site.registry.port, address="0.0.0.0" if site.kubernetes else "127.0.0.1")
    stopped = stop_signal()
    print(
        f"The registry service is listening at http://127.0.0.1:{site.registry.port}{REGISTRY.prefix}"
    )
    seen, last_run = -1, 0.0
    while not stopped.is_set():
        try:
            await asyncio.wait_for(stopped.wait(), CHANGE_CHECK_INTERVAL)
        except TimeoutError:
            revision = await asyncio.to_thread(reconciler.registry.revision)
            due = time.monotonic() - last_run >= site.registry.reconcile_interval
            if revision != seen or due:
                seen, last_run = revision, time.monotonic()
                await reconciler.run()
    server.stop()


def main(argv: list[str] | None = None) -> None:
    run_service("enclave-registry-service", serve, argv)


if __name__ == "__main__":
    main()
