"""`enclave job ...`: the jobs of every project, from the host.

`list` shows them (waiting ones with their place in their project's queue), `show ID` one with
its code's hash, parameters and outputs (`--code` prints the code as submitted), and `cancel
ID` cancels a waiting or running one (recorded as the local user who ran it; the job service
stops a running one within `jobs.check_interval` seconds).
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys

from ..core.command_line import service_verbs


def _actor() -> str:
    return f"command line ({getpass.getuser()})"


def cmd_list(book, args) -> None:
    statuses = args.status or ()
    for job in book.jobs_of(args.project, statuses):
        place = f"#{job['position']} " if job["position"] else ""
        note = job["waiting_for"] or job["reason"]
        print(
            f"{job['id']:>6}  {job['status']:<10} {job['project']:<20} {job['submitter']:<12} "
            f"{job['name']:<28} {place}{note}"
        )


def cmd_show(book, args) -> None:
    if args.code:
        sys.stdout.buffer.write(book.code_of(args.job)[2])
        return
    print(json.dumps(book.show(args.job), indent=2))


def cmd_cancel(book, args) -> None:
    job = book.cancel(_actor(), args.job)
    if job["status"] == "cancelled":
        print(f"Job {job['id']} cancelled before it started.")
    else:
        print(f"Job {job['id']} is being stopped; its end is recorded once it has stopped.")


def _open_job_book(site):
    from .service import site_job_book  # the web service's imports: only when a verb runs

    return site_job_book(site)


def add_job_verbs(verbs: argparse._SubParsersAction) -> None:
    action = service_verbs(
        verbs, "job", "jobs: notebooks and scripts run apart from sessions", _open_job_book
    )
    listing = action("list", cmd_list, "jobs, newest first, waiting ones with their place")
    listing.add_argument("--project", help="of this project only")
    listing.add_argument(
        "--status",
        action="append",
        choices=("queued", "running", "succeeded", "failed", "cancelled", "stopped"),
        help="only jobs in this state (may be repeated)",
    )
    show = action("show", cmd_show, "one job: its code's hash, parameters, end and outputs")
    show.add_argument("job", type=int)
    show.add_argument("--code", action="store_true", help="print the code as submitted")
    cancel = action("cancel", cmd_cancel, "cancel a waiting or running job")
    cancel.add_argument("job", type=int)
