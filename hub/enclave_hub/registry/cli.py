"""`enclave project ...`: the admin's verbs for projects, members and dataset grants.

Changes are recorded in the audit log as made by the local user at the command line; running
sessions follow them at the registry service's next reconcile.
"""

from __future__ import annotations

import argparse
import getpass
import json
from pathlib import Path

from ..core.registry import Registry, site_registry
from ..core.site_config import site_config


def _actor() -> str:
    return f"{getpass.getuser()} (command line)"


def _print(project: dict) -> None:
    print(json.dumps(project, indent=2))


def cmd_list(registry: Registry, args: argparse.Namespace) -> None:
    for project in registry.list_projects():
        members = ", ".join(m["username"] for m in project["members"]) or "-"
        print(f"{project['id']:<24} {project['status']:<10} {project['title']}  [{members}]")


def cmd_show(registry: Registry, args: argparse.Namespace) -> None:
    _print(registry.show(args.project))


def cmd_create(registry: Registry, args: argparse.Namespace) -> None:
    _print(
        registry.create_project(
            _actor(),
            args.project,
            args.title,
            description=args.description,
            agreement=args.agreement,
            starts=args.starts,
            ends=args.ends,
            profile=args.profile,
            egress_allow=args.egress or (),
        )
    )


def cmd_add_member(registry: Registry, args: argparse.Namespace) -> None:
    _print(registry.add_member(_actor(), args.project, args.user, args.role, args.expires))


def cmd_remove_member(registry: Registry, args: argparse.Namespace) -> None:
    _print(registry.remove_member(_actor(), args.project, args.user))


def cmd_grant(registry: Registry, args: argparse.Namespace) -> None:
    _print(registry.grant(_actor(), args.project, args.dataset, args.expires))


def cmd_revoke(registry: Registry, args: argparse.Namespace) -> None:
    _print(registry.revoke(_actor(), args.project, args.dataset))


def cmd_suspend(registry: Registry, args: argparse.Namespace) -> None:
    _print(registry.set_status(_actor(), args.project, "suspended"))


def cmd_archive(registry: Registry, args: argparse.Namespace) -> None:
    _print(registry.set_status(_actor(), args.project, "archived"))


def run(args: argparse.Namespace) -> int:
    writable = args.project_verb not in ("list", "show")
    args.project_handler(site_registry(site_config(args.config), writable), args)
    return 0


def add_project_verbs(verbs: argparse._SubParsersAction) -> None:
    project = verbs.add_parser("project", help="create projects, add members, grant datasets")
    sub = project.add_subparsers(dest="project_verb", required=True)

    def verb(name: str, handler, help: str, *positionals: str) -> argparse.ArgumentParser:
        parser = sub.add_parser(name, help=help)
        parser.add_argument("--config", type=Path, help="site configuration file")
        for positional in positionals:
            parser.add_argument(positional)
        parser.set_defaults(handler=run, project_handler=handler)
        return parser

    verb("list", cmd_list, "every project, its status and members")
    verb("show", cmd_show, "one project in full (JSON)", "project")
    create = verb("create", cmd_create, "a new project", "project")
    create.add_argument("--title", required=True)
    create.add_argument("--description", default="")
    create.add_argument("--agreement", default="", help="data-use agreement reference")
    create.add_argument("--starts", help="first day (YYYY-MM-DD)")
    create.add_argument("--ends", help="last day (YYYY-MM-DD)")
    create.add_argument("--profile", default="default", help="resource profile")
    create.add_argument("--egress", action="append", help="host:port its sessions may reach")
    add = verb("add-member", cmd_add_member, "make a user a member", "project", "user")
    add.add_argument(
        "--role", default="researcher", help="researcher, output-checker, project-admin"
    )
    add.add_argument("--expires", help="ISO 8601 date or time (UTC unless an offset is given)")
    verb("remove-member", cmd_remove_member, "end a membership now", "project", "user")
    grant = verb(
        "grant", cmd_grant, "let the project's sessions read a dataset", "project", "dataset"
    )
    grant.add_argument("--expires", help="ISO 8601 date or time (UTC unless an offset is given)")
    verb("revoke", cmd_revoke, "withdraw a dataset grant now", "project", "dataset")
    verb("suspend", cmd_suspend, "stop the project's sessions until it is active again", "project")
    verb("archive", cmd_archive, "close the project for good", "project")
