"""The registry service: keeps running sessions in line with the registry.

It reconciles every `registry.reconcile_interval` seconds (and at once when asked). Started by
`enclave up` after the audit service and before the hub:
`python -m enclave_hub.registry.service --config <site.yaml>`.
"""

from __future__ import annotations

import asyncio

import httpx
from tornado import httpserver, web

from ..audit.client import AuditRefused
from ..config import SiteConfig
from ..secrets import load_secrets
from ..service_process import run_service, stop_signal
from .reconciler import HubSessions, reconcile
from .site import site_registry

SERVICE_NAME = "enclave-registry"
PREFIX = f"/services/{SERVICE_NAME}/"


class Reconciler:
    """Runs `reconcile` now and then, one run at a time, reporting what it did."""

    def __init__(self, site: SiteConfig):
        self.registry = site_registry(site)
        token = load_secrets(site.state_dir).registry_service_token
        self.hub = HubSessions(f"{site.hub_url}/hub/api", token)
        self._lock = asyncio.Lock()

    async def run(self) -> None:
        async with self._lock:
            try:
                stopped = await asyncio.to_thread(
                    reconcile, self.registry, self.hub, self.registry.record
                )
            except (httpx.HTTPError, AuditRefused) as error:
                print(f"Reconciling sessions failed, will try again: {error}", flush=True)
                return
            for session, reason in stopped:
                print(f"Stopped {session.user}/{session.project}: {reason}", flush=True)


class HealthHandler(web.RequestHandler):
    def get(self) -> None:
        self.finish({"service": SERVICE_NAME})


async def serve(site: SiteConfig) -> None:
    reconciler = Reconciler(site)
    app = web.Application([(PREFIX + "api/health", HealthHandler)])
    server = httpserver.HTTPServer(app)
    server.listen(site.registry.port, address="127.0.0.1")
    stopped = stop_signal()
    print(f"The registry service is listening at http://127.0.0.1:{site.registry.port}{PREFIX}")
    while not stopped.is_set():
        try:
            await asyncio.wait_for(stopped.wait(), site.registry.reconcile_interval)
        except TimeoutError:
            await reconciler.run()
    server.stop()


def main(argv: list[str] | None = None) -> None:
    run_service("enclave-registry-service", serve, argv)


if __name__ == "__main__":
    main()
