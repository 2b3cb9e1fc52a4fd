"""What every hub-side service process shares: its command line and how it is told to stop."""

from __future__ import annotations

import argparse
import asyncio
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path

from .site_config import SiteConfig, load_site_config


def stop_signal() -> asyncio.Event:
    """An event set when the process gets SIGTERM or SIGINT (as `enclave up` stops it)."""
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopped.set)
    return stopped


def run_service(
    prog: str, serve: Callable[[SiteConfig], Awaitable[None]], argv: list[str] | None
) -> None:
    """`python -m <service> --config <site.yaml>`: run `serve` with the resolved configuration."""
    parser = argparse.ArgumentParser(prog=prog)
    parser.add_argument("--config", type=Path, required=True, help="resolved site configuration")
    args = parser.parse_args(argv)
    asyncio.run(serve(load_site_config(args.config)))
