"""`enclave packages ...`: which Python packages sessions may install, from the host.

`allow NAME [--project P]` and `disallow` change the registry's allowances (recorded in the
audit log as the local user who ran them); `list` shows them with the site's own list;
`requests` shows researchers' requests, `approve` and `reject` answer them.
"""

from __future__ import annotations

import argparse
import getpass

from ..core.command_line import service_verbs


def _actor() -> str:
    return f"command line ({getpass.getuser()})"


def cmd_allow(allowances, args) -> None:
    allowances.allow(_actor(), args.name, args.project)
    where = f"project '{args.project}'" if args.project else "every project"
    print(f"'{args.name}' may be installed by sessions of {where}.")


def cmd_disallow(allowances, args) -> None:
    allowances.disallow(_actor(), args.name, args.project)
    print(f"'{args.name}' is no longer allowed there.")


def cmd_list(allowances, args) -> None:
    for a in allowances.allowances():
        print(f"{a['name']:<30} {a['project'] or '(every project)':<24} {a['allowed_by']}")


def cmd_requests(allowances, args) -> None:
    for r in allowances.all():
        print(
            f"{r['id']:>6}  {r['status']:<10} {r['name']:<28} {r['project']:<20} "
            f"{r['requester']:<12} {r['reason']}"
        )


def cmd_approve(allowances, args) -> None:
    found = allowances.approve(_actor(), args.request, args.answer)
    print(f"Request {found['id']} approved: '{found['name']}' is allowed in {found['project']}.")


def cmd_reject(allowances, args) -> None:
    found = allowances.reject(_actor(), args.request, args.answer)
    print(f"Request {found['id']} rejected.")


def _open_allowances(site):
    from .service import site_allowances  # the web service's imports: only when a verb runs

    return site_allowances(site)


def add_package_verbs(verbs: argparse._SubParsersAction) -> None:
    action = service_verbs(
        verbs, "packages", "the Python packages sessions may install", _open_allowances
    )

    for name, handler, help_text in (
        ("allow", cmd_allow, "let sessions install a package (its dependencies need allowing too)"),
        ("disallow", cmd_disallow, "withdraw an allowance"),
    ):
        parser = action(name, handler, help_text)
        parser.add_argument("name", help="the package's name, as pip knows it")
        parser.add_argument("--project", help="for this project only (default: every project)")
    action("list", cmd_list, "the names allowed, and for which projects")
    action("requests", cmd_requests, "researchers' requests, waiting ones first")
    approve = action("approve", cmd_approve, "allow a requested package in its project")
    approve.add_argument("request", type=int)
    approve.add_argument("--answer", default="", help="a note the researcher reads")
    reject = action("reject", cmd_reject, "refuse a request, saying why")
    reject.add_argument("request", type=int)
    reject.add_argument("--answer", required=True, help="why, for the researcher")
