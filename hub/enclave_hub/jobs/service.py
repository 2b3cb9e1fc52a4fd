"""The job service: sessions submit notebooks and scripts here, with their own tokens, and it
runs them in sandboxes of their projects as their turn comes. It listens on the hub's address,
beside the airlock, and runs as root, which building sandboxes needs. Started by `enclave up`:
`python -m enclave_hub.jobs.service --config <site.yaml>`.
"""

from __future__ import annotations

import asyncio
import logging

from tornado import httpserver, web

from ..core.hub_api import HubSessions
from ..core.jobs import JobBook
from ..core.registry import site_registry
from ..core.service_auth import service_app
from ..core.service_process import run_service, stop_signal
from ..core.services import JOBS
from ..core.site_config import SiteConfig
from ..core.site_secrets import load_secrets
from ..sandbox.gpu import host_gpus
from .api import api_handlers
from .dispatcher import Dispatcher
from .launcher import JobLauncher


def site_job_book(site: SiteConfig) -> JobBook:
    """The deployment's jobs, with the GPUs jobs may use (`jobs.gpus`, or the host's)."""
    gpus = host_gpus() if site.jobs.gpus is None else site.jobs.gpus
    return JobBook(site_registry(site), site.jobs, site.sessions.profiles, gpus)


def make_app(site: SiteConfig, book: JobBook, wake) -> web.Application:
    token = load_secrets(site.state_dir).jobs_service_token
    return service_app(
        site,
        JOBS,
        token,
        api_handlers(JOBS.prefix),
        book=book,
        wake=wake,
        hub_sessions=HubSessions(site.hub_api_url, token),
        # A notebook as JSON in base64, with room for the rest of the request.
        max_body_size=int(site.jobs.max_code_size) * 4 // 3 + 1024**2,
    )


async def serve(site: SiteConfig) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    book = site_job_book(site)
    dispatcher = Dispatcher(site, book.registry, book, JobLauncher(site, book))
    app = make_app(site, book, dispatcher.wake.set)
    server = httpserver.HTTPServer(app, max_body_size=app.settings["max_body_size"])
    server.listen(site.jobs.port, address=site.listen_address)
    loop = asyncio.create_task(dispatcher.run())
    print(
        f"The job service is listening at {site.jobs_url}{JOBS.prefix} "
        f"({len(book.gpu_pool)} GPU(s) for jobs, {site.jobs.per_project} job(s) per project)",
        flush=True,
    )
    await stop_signal().wait()
    server.stop()
    loop.cancel()
    await dispatcher.stop_all("the job service stopped")


def main(argv: list[str] | None = None) -> None:
    run_service("enclave-jobs-service", serve, argv)


if __name__ == "__main__":
    main()
