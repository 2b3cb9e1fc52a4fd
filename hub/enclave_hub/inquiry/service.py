"""The inquiry service: the data inquiry portal's pages and API, for the people of
`inquiry.groups`, members of no project included. It reads the whole data root (counts and the
catalogue) and answers with counts only. Listens on loopback; the hub routes
`/services/enclave-inquiry/` to it. Started by `enclave up`:
`python -m enclave_hub.inquiry.service --config <site.yaml>`.
"""

from __future__ import annotations

from tornado import httpserver, web

from ..core.applications import Applications
from ..core.audit_client import platform_recorder
from ..core.registry import site_registry
from ..core.service_auth import service_app
from ..core.service_process import run_service, stop_signal
from ..core.services import INQUIRY
from ..core.site_config import SiteConfig
from ..core.site_secrets import load_secrets
from .api import api_handlers
from .catalogue import Catalogue
from .counts import CommonsCounts
from .disclosure import Disclosure, RateLimit
from .pages import page_handlers


def make_app(site: SiteConfig) -> web.Application:
    disclosure = Disclosure(site.inquiry.min_count, site.inquiry.round_to)
    return service_app(
        site,
        INQUIRY,
        load_secrets(site.state_dir).inquiry_service_token,
        [*api_handlers(INQUIRY.prefix), *page_handlers(INQUIRY.prefix)],
        counts=CommonsCounts(site.data_root),
        catalogue=Catalogue(site.data_root, disclosure),
        disclosure=disclosure,
        rate_limit=RateLimit(site.inquiry.queries_per_minute),
        record=platform_recorder(site),
        applications=Applications(site_registry(site)),
        xsrf_cookies=True,
    )


async def serve(site: SiteConfig) -> None:
    server = httpserver.HTTPServer(make_app(site))
    # Reached by the hub's proxy alone: on loopback here, in its own pod on Kubernetes.
    server.listen(site.inquiry.port, address="0.0.0.0" if site.kubernetes else "127.0.0.1")
    print(
        f"The inquiry service is listening at http://127.0.0.1:{site.inquiry.port}{INQUIRY.prefix}",
        flush=True,
    )
    await stop_signal().wait()
    server.stop()


def main(argv: list[str] | None = None) -> None:
    run_service("enclave-inquiry-service", serve, argv)


if __name__ == "__main__":
    main()
