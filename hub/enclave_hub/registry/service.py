"""The registry service: the admins' REST API and pages, and the reconciler.

It reconciles every `registry.reconcile_interval` seconds and within a second of any change
to the registry, whichever process made it (these pages, the API or `enclave project`). While
the database is unavailable it says so once, keeps looking every second, and reconciles again
as soon as the database is back (a pass the outage cut short is simply made again: a pass
changes nothing in the database, and the hub re-applies every user's groups and roles).
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
from ..core.registry import DatabaseUnavailable, Outage, Registry, site_registry
from ..core.service_auth import service_app
from ..core.service_process import run_service, stop_signal
from ..core.services import REGISTRY
from ..core.site_config import SiteConfig
from ..core.site_secrets import load_secrets
from .api import api_handlers
from .pages import page_handlers
from .reconciler import reconcile

CHANGE_CHECK_INTERVAL = 1.0  # seconds between looks at the registry's revision


def say(line: str) -> None:
    print(line, flush=True)


class Reconciler:
    """Runs `reconcile`, then has the hub reflect the registry into its groups and roles; now
    and then, one run at a time, reporting what it did."""

    def __init__(self, registry: Registry, hub: HubSessions):
        self.registry = registry
        self.hub = hub
        self.outage = Outage("The registry service", say)
        self._lock = asyncio.Lock()

    @classmethod
    def of(cls, site: SiteConfig) -> Reconciler:
        token = load_secrets(site.state_dir).registry_service_token
        return cls(site_registry(site), HubSessions(site.hub_api_url, token))

    async def run(self) -> bool:
        """One pass; False when it failed (and is to be made again)."""
        async with self._lock:
            try:
                stopped = await asyncio.to_thread(
                    reconcile, self.registry, self.hub, self.registry.record
                )
                for session, reason in stopped:
                    say(f"Stopped {session.user}/{session.project}: {reason}")
                changed = await asyncio.to_thread(self.hub.reflect_access)
            except DatabaseUnavailable as error:
                self.outage.failed(error)
                return False
            except (httpx.HTTPError, AuditRefused) as error:
                say(f"Reconciling sessions failed, will try again: {error}")
                return False
            if changed:
                say(f"Project groups and roles changed for {', '.join(changed)}")
            return True


async def reconcile_on_change(
    reconciler: Reconciler,
    interval: float,
    stopped: asyncio.Event,
    check_every: float = CHANGE_CHECK_INTERVAL,
) -> None:
    """Until `stopped`: look at the registry's revision every `check_every` seconds and
    reconcile when it moved, when `interval` seconds passed since the last pass, and when the
    database is back after an outage."""
    seen, last_run = -1, 0.0
    while not stopped.is_set():
        try:
            await asyncio.wait_for(stopped.wait(), check_every)
            continue
        except TimeoutError:
            pass
        try:
            revision = await asyncio.to_thread(reconciler.registry.revision)
        except DatabaseUnavailable as error:
            reconciler.outage.failed(error)
            continue
        if reconciler.outage.back():
            seen = -1  # whatever the outage cut short is done again now
        due = time.monotonic() - last_run >= interval
        if revision != seen or due:
            seen, last_run = revision, time.monotonic()
            await reconciler.run()


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
    reconciler = Reconciler.of(site)
    server = httpserver.HTTPServer(make_app(site, reconciler))
    # Reached by the hub's proxy alone: on loopback here, in its own pod on Kubernetes.
    server.listen(site.registry.port, address="0.0.0.0" if site.kubernetes else "127.0.0.1")
    stopped = stop_signal()
    print(
        f"The registry service is listening at http://127.0.0.1:{site.registry.port}{REGISTRY.prefix}"
    )
    await reconcile_on_change(reconciler, site.registry.reconcile_interval, stopped)
    server.stop()


def main(argv: list[str] | None = None) -> None:
    run_service("enclave-registry-service", serve, argv)


if __name__ == "__main__":
    main()
