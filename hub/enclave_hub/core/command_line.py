"""What the services' verbs of `enclave` share: each reads the site configuration (`--config`)
and runs its handler on the service's own object, made from it."""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable
from pathlib import Path

from .site_config import KEY_FINGERPRINT, SiteConfig, site_config


def key_fingerprint(text: str) -> str:
    """An audit key's fingerprint given on the command line (argparse's `type`)."""
    if not re.fullmatch(KEY_FINGERPRINT, text):
        raise argparse.ArgumentTypeError("must be sha256: and 64 lower-case hex digits")
    return text


def service_verbs(
    verbs: argparse._SubParsersAction,
    name: str,
    help_text: str,
    open_service: Callable[[SiteConfig], object],
) -> Callable[..., argparse.ArgumentParser]:
    """The group `enclave NAME ...`, and a function that adds a verb to it:
    `add(verb, handler, help)`, its handler called as `handler(open_service(site), args)`.
    Refusals (RegistryError, InvalidInput) reach `enclave`'s own one-line errors."""
    group = verbs.add_parser(name, help=help_text)
    actions = group.add_subparsers(dest="action", required=True)

    def run(args: argparse.Namespace) -> int:
        args.verb_handler(open_service(site_config(args.config)), args)
        return 0

    def add(verb: str, handler, help_text: str) -> argparse.ArgumentParser:
        parser = actions.add_parser(verb, help=help_text)
        parser.add_argument("--config", type=Path, help="site configuration file (YAML)")
        parser.set_defaults(handler=run, verb_handler=handler)
        return parser

    return add
