"""The `enclave` command line."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .config import (
    CONFIG_FILE_NAME,
    SiteConfig,
    SiteConfigError,
    default_state_dir,
    load_site_config,
    parse_site_config,
    write_default_site_config,
)
from .secrets import SecretError
from .supervisor import StartupError, Supervisor


def _site_config_for_up(config_arg: Path | None) -> SiteConfig:
    """The named configuration, or the state directory's, written with defaults if new."""
    if config_arg is not None:
        return load_site_config(config_arg)
    path = default_state_dir() / CONFIG_FILE_NAME
    if not path.exists():
        path = write_default_site_config(default_state_dir())
        print(f"Wrote a default site configuration to {path}", flush=True)
    return load_site_config(path)


def cmd_up(args: argparse.Namespace) -> int:
    site = _site_config_for_up(args.config)
    if args.port is not None:
        data = site.model_dump(mode="json", exclude_none=True)
        data["hub"]["port"] = args.port
        site = parse_site_config(data, "--port")
    return Supervisor(site).run()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="enclave", description="Enclave, a trusted research environment."
    )
    verbs = parser.add_subparsers(dest="verb", required=True)
    up = verbs.add_parser("up", help="start everything on this machine; Ctrl-C stops it")
    up.add_argument("--config", type=Path, help="site configuration file (YAML)")
    up.add_argument("--port", type=int, help="public port (overrides hub.port)")
    up.set_defaults(handler=cmd_up)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except (SiteConfigError, SecretError, StartupError) as error:
        print(f"enclave: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
