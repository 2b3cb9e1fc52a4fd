"""The package index service: the simple API that sessions' pip reads, and their requests
for packages. It listens on the hub's address, beside the airlock, so that sessions reach it
with their own tokens; it alone reaches the upstream index. Started by `enclave up`:
`python -m enclave_hub.packages.service --config <site.yaml>`.
"""

from __future__ import annotations

from tornado import httpserver, web

from ..core.audit_client import platform_recorder
from ..core.hub_api import HubSessions
from ..core.package_allowances import PackageAllowances
from ..core.registry import site_registry
from ..core.service_auth import service_app
from ..core.service_process import run_service, stop_signal
from ..core.services import PACKAGES
from ..core.site_config import SiteConfig
from ..core.site_secrets import load_secrets
from .api import api_handlers
from .index import index_handlers
from .upstream import Upstream, host_index_url


def site_allowances(site: SiteConfig) -> PackageAllowances:
    """The deployment's allowances: the site's list and the registry's."""
    return PackageAllowances(site_registry(site), site.packages.allow)


def site_upstream(site: SiteConfig) -> Upstream:
    settings = site.packages
    return Upstream(
        str(settings.upstream) if settings.upstream else host_index_url(),
        site.packages_cache_dir,
        settings.listing_ttl,
        int(settings.max_file_size),
    )


def make_app(site: SiteConfig, upstream: Upstream) -> web.Application:
    token = load_secrets(site.state_dir).packages_service_token
    return service_app(
        site,
        PACKAGES,
        token,
        [*index_handlers(PACKAGES.prefix), *api_handlers(PACKAGES.prefix)],
        allowances=site_allowances(site),
        upstream=upstream,
        hub_sessions=HubSessions(site.hub_api_url, token),
        record=platform_recorder(site),
    )


async def serve(site: SiteConfig) -> None:
    site.packages_cache_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    upstream = site_upstream(site)
    server = httpserver.HTTPServer(make_app(site, upstream))
    server.listen(site.packages.port, address=site.listen_address)
    print(
        f"The package index is listening at {site.packages_url}{PACKAGES.prefix}simple/ "
        f"(files from {upstream.index_url})",
        flush=True,
    )
    await stop_signal().wait()
    server.stop()
    await upstream.close()


def main(argv: list[str] | None = None) -> None:
    run_service("enclave-packages-service", serve, argv)


if __name__ == "__main__":
    main()
