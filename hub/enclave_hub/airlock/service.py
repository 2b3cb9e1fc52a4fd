"""The airlock service: sessions' export requests, the checkers' pages, the outboxes.

It listens on the hub's address, beside the audit service, so that sessions reach it with
their own tokens; the hub routes `/services/enclave-airlock/` to it for browsers and signs
people in. Started by `enclave up`: `python -m enclave_hub.airlock.service --config <site.yaml>`.
"""

from __future__ import annotations

from tornado import httpserver, web

from ..core.audit_client import platform_recorder
from ..core.hub_api import HubSessions
from ..core.registry import site_registry
from ..core.service_auth import service_app
from ..core.service_process import run_service, stop_signal
from ..core.services import AIRLOCK
from ..core.site_config import SiteConfig
from ..core.site_secrets import load_secrets
from .api import api_handlers
from .checks import Rules
from .exports import Airlock, Limits
from .pages import page_handlers
from .store import AirlockStore

# Room for the multipart framing around a request's files.
BODY_OVERHEAD = 1024 * 1024


def site_airlock(site: SiteConfig) -> Airlock:
    """The deployment's airlock: its tables beside the registry's, its store, its rules."""
    return Airlock(
        site.registry_url,
        AirlockStore(site.airlock_dir),
        site_registry(site, writable=False),
        Rules.of(site.airlock),
        Limits.of(site.airlock),
        platform_recorder(site),
    )


def make_app(site: SiteConfig, airlock: Airlock) -> web.Application:
    token = load_secrets(site.state_dir).airlock_service_token
    return service_app(
        site,
        AIRLOCK,
        token,
        [*api_handlers(AIRLOCK.prefix), *page_handlers(AIRLOCK.prefix)],
        airlock=airlock,
        hub_sessions=HubSessions(site.hub_api_url, token),
        xsrf_cookies=True,
    )


async def serve(site: SiteConfig) -> None:
    airlock = site_airlock(site)
    server = httpserver.HTTPServer(
        make_app(site, airlock),
        max_body_size=site.airlock.max_request_size + BODY_OVERHEAD,
    )
    server.listen(site.airlock.port, address=site.listen_address)
    print(f"The airlock service is listening at {site.airlock_url}{AIRLOCK.prefix}", flush=True)
    await stop_signal().wait()
    server.stop()


def main(argv: list[str] | None = None) -> None:
    run_service("enclave-airlock-service", serve, argv)


if __name__ == "__main__":
    main()
