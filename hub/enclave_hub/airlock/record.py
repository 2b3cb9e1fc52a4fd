"""The release record: a machine-readable account of one release (SATRE 3.3.09).

Who asked and why, each released file with its SHA-256, every check and its result, every
review and decision, the code and environment the session reported, and the versions of the
project's datasets when the request was made.
"""

from __future__ import annotations

import platform
from datetime import datetime

from .models import ExportRequest

FORMAT = "enclave-airlock-release/1"


def _when(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def release_record(request: ExportRequest, released_at: datetime, rules: dict) -> dict:
    revision = request.current
    outputs = [f for f in revision.files if f.role == "output"]
    return {
        "format": FORMAT,
        "request": request.id,
        "revision": revision.number,
        "project": request.project,
        "requester": request.requester,
        "session": revision.session,
        "justification": revision.justification,
        "requested_at": _when(request.created_at),
        "submitted_at": _when(revision.submitted_at),
        "released_at": _when(released_at),
        "files": [
            {"name": f.name, "sha256": f.sha256, "size": f.size, "kind": f.kind} for f in outputs
        ],
        "supporting_files": [
            {"name": f.name, "sha256": f.sha256, "size": f.size}
            for f in revision.files
            if f.role != "output"
        ],
        "checks": {
            "rules": rules,
            "outcome": revision.checks_outcome,
            "results": [
                {"name": f.name, "kind": f.kind, "outcome": f.outcome, "findings": f.findings}
                for f in revision.files
            ],
        },
        "reviews": [
            {
                "reviewer": r.reviewer,
                "decision": r.decision,
                "comment": r.comment,
                "revision": r.revision,
                "at": _when(r.at),
            }
            for r in request.reviews
        ],
        "history": [
            {
                "revision": r.number,
                "submitted_at": _when(r.submitted_at),
                "checks_outcome": r.checks_outcome,
                "files": [{"name": f.name, "sha256": f.sha256} for f in r.files],
            }
            for r in request.revisions
        ],
        "job": revision.job_facts,
        "environment": revision.environment,
        "datasets": revision.datasets,
        "released_by": {"airlock": _airlock_version(), "python": platform.python_version()},
    }


def _airlock_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("enclave")
    except PackageNotFoundError:
        return "unknown"
