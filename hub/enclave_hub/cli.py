"""The `enclave` command line."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .airlock.cli import add_airlock_verbs
from .audit.cli import add_audit_verbs
from .backup import BackupError
from .backup.cli import add_backup_verbs
from .core.audit_key import pin_audit_key
from .core.registry import RegistryError
from .core.site_config import (
    SiteConfigError,
    parse_site_config,
    site_config,
)
from .core.site_secrets import SecretError
from .core.validation import InvalidInput
from .datasets_cli import add_dataset_verbs
from .jobs.cli import add_job_verbs
from .kernels import add_kernel_verbs
from .local import StartupError
from .packages.cli import add_package_verbs
from .registry.cli import add_project_verbs


def cmd_up(args: argparse.Namespace) -> int:
    site = pin_audit_key(site_config(args.config), args.config)
    if args.port is not None:
        data = site.model_dump(mode="json", exclude_none=True)
        data["hub"]["port"] = args.port
        site = parse_site_config(data, "--port")
    from .local.supervisor import Supervisor  # the whole system: slow to import

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
    add_audit_verbs(verbs)
    add_project_verbs(verbs)
    add_dataset_verbs(verbs)
    add_airlock_verbs(verbs)
    add_package_verbs(verbs)
    add_job_verbs(verbs)
    add_kernel_verbs(verbs)
    add_backup_verbs(verbs)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except (
        SiteConfigError,
        SecretError,
        StartupError,
        RegistryError,
        InvalidInput,
        BackupError,
    ) as error:
        print(f"enclave: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
