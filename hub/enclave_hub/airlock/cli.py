"""`enclave airlock ...`: export requests from the host's command line.

`list` and `show` read every request (the operator's view). `approve` and `reject` act for a
named output checker of the request's project, under the same rules as the pages (never the
requester, one decision each, `airlock.reviews_required` approvals release); the audit record
says the decision came from the command line and which local user entered it.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from pathlib import Path

from ..core.site_config import site_config


def cmd_list(airlock, args: argparse.Namespace) -> None:
    for r in airlock.visible_to(getpass.getuser(), platform_reader=True):
        if args.status and r["status"] != args.status:
            continue
        print(
            f"{r['id']:>6}  {r['status']:<14} {r['checks']:<5} {r['project']:<20} "
            f"{r['requester']:<12} {', '.join(r['files'])}"
        )


def cmd_show(airlock, args: argparse.Namespace) -> None:
    print(json.dumps(airlock.show(getpass.getuser(), args.request, True), indent=2))


def _decide(decision: str):
    def decide(airlock, args: argparse.Namespace) -> None:
        result = airlock.review(
            args.checker,
            args.request,
            decision,
            args.comment,
            source=f"command line ({getpass.getuser()})",
        )
        print(f"Request {result['id']} is {result['status']}.")

    return decide


def run(args: argparse.Namespace) -> int:
    # The web service's imports take a second: only when a verb runs, not for --help.
    from .exports import AirlockError
    from .service import site_airlock

    airlock = site_airlock(site_config(args.config))
    try:
        args.airlock_handler(airlock, args)
    except AirlockError as error:
        print(f"enclave: {error}", file=sys.stderr)
        return 2
    return 0


def add_airlock_verbs(verbs: argparse._SubParsersAction) -> None:
    airlock = verbs.add_parser("airlock", help="list, show and review export requests")
    sub = airlock.add_subparsers(dest="airlock_verb", required=True)

    def verb(name: str, handler, help: str) -> argparse.ArgumentParser:
        parser = sub.add_parser(name, help=help)
        parser.add_argument("--config", type=Path, help="site configuration file")
        parser.set_defaults(handler=run, airlock_handler=handler)
        return parser

    listing = verb("list", cmd_list, "every export request, newest first")
    listing.add_argument("--status", help="only those in this status (in-review, released...)")
    verb("show", cmd_show, "one request in full (JSON)").add_argument("request", type=int)
    for decision, handler in (("approve", _decide("approve")), ("reject", _decide("reject"))):
        parser = verb(decision, handler, f"{decision} a request for a named output checker")
        parser.add_argument("request", type=int)
        parser.add_argument("--checker", required=True, help="the output checker deciding")
        parser.add_argument("--comment", default="", help="required to reject")
