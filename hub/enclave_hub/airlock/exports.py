"""The airlock's operations: submit, review, release, and what each person may see.

Every step is recorded in the audit log before the change it describes is committed: if the
event cannot be recorded, the change is rolled back and the step refused. The record and the
commit are two steps, so a crash between them leaves a record of a change that did not happen,
never a change without its record.

A release's files reach the requester's outbox before its commit and leave it again when the
commit fails (the database lost, say), so that no outbox holds a release the database does
not; a commit that did reach the database although its answer was lost has its outbox put
back from the snapshots when the requester next downloads.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from enclave.catalog import CatalogError, Dataset

from ..core.audit_client import AuditRefused
from ..core.jobs import ended_job
from ..core.registry import (
    DatabaseUnavailable,
    Registry,
    RegistryError,
    Sessions,
    open_engine,
)
from .checks import Rules, worst
from .checks.files import OUTPUT, SUPPORTING
from .checks.runner import run_checks
from .models import (
    CHECKS_FAILED,
    IN_REVIEW,
    REJECTED,
    RELEASED,
    REVISABLE,
    Base,
    ExportFile,
    ExportRequest,
    Review,
    Revision,
    RevisionJob,
)
from .record import release_record
from .store import AirlockStore, BadName, TooLarge, check_name

Recorder = Callable[[dict], None]
DECISIONS = ("approve", "reject")
MAX_JUSTIFICATION = 4000
MAX_COMMENT = 4000
MAX_ENVIRONMENT = 256 * 1024


class AirlockError(Exception):
    """A step that cannot be taken (already reviewed, not revisable...); nothing changed."""


class InvalidRequest(AirlockError):
    """Bad input: the message names it."""


class NotAllowed(AirlockError):
    """The person may not take this step or see this request."""


class NotFound(AirlockError):
    """No such request, or none this person may see."""


@dataclass(frozen=True)
class Upload:
    """One file sent with a request: its name in the session, its role, its bytes."""

    name: str
    role: str
    content: BinaryIO


@dataclass(frozen=True)
class Submission:
    requester: str
    project: str
    justification: str
    uploads: list[Upload]
    session: str | None = None
    environment: dict = field(default_factory=dict)
    revises: int | None = None
    job: int | None = None  # the job whose outputs these are


@dataclass(frozen=True)
class Limits:
    """What one request may hold, how long its checks may run, and the approvals it needs."""

    max_files: int
    max_request_size: int
    check_timeout: float
    check_memory: int
    reviews_required: int

    @classmethod
    def of(cls, settings) -> Limits:
        return cls(**{name: getattr(settings, name) for name in cls.__dataclass_fields__})


def now_utc() -> datetime:
    return datetime.now(UTC)


def _target(request_id: int) -> str:
    return f"airlock-request/{request_id}"


def _awaits(request: ExportRequest, checker: str) -> bool:
    """Is the request in review, not the checker's own, and not yet decided by them?"""
    return (
        request.status == IN_REVIEW
        and checker != request.requester
        and not any(
            r.reviewer == checker and r.revision == request.current.number for r in request.reviews
        )
    )


def _may_review(request: ExportRequest, reviewer: str, checkers: set[str]) -> None:
    """Refuse a review by the requester, by someone not a checker of the project now, of a
    request not in review, or a second one of the same revision by the same checker."""
    revision = request.current
    if reviewer == request.requester:
        raise NotAllowed("no one may review their own request")
    if reviewer not in checkers:
        raise NotAllowed(f"{reviewer} is not an output checker of project '{request.project}' now")
    if request.status != IN_REVIEW:
        raise AirlockError(f"request {request.id} is {request.status}, not in review")
    if any(r.reviewer == reviewer and r.revision == revision.number for r in request.reviews):
        raise AirlockError(
            f"{reviewer} has already reviewed revision {revision.number} of request "
            f"{request.id}; another checker must review it"
        )


def _check_comment(revision: Revision, decision: str, comment: str) -> None:
    """A rejection says why; an approval of files the checks flagged says why they may leave."""
    if decision == "reject" and not comment:
        raise InvalidRequest("a rejection needs a comment telling the requester why")
    flagged = [f.name for f in revision.files if f.outcome == "flag"]
    if decision == "approve" and flagged and not comment:
        raise InvalidRequest(
            f"{', '.join(flagged)} flagged by the checks: say in a comment why they may leave"
        )


def _status_after_review(request: ExportRequest, decision: str, reviews_required: int) -> str:
    """A rejection rejects; enough distinct approvals of the current revision release."""
    if decision == "reject":
        return REJECTED
    return RELEASED if len(approvers(request)) >= reviews_required else IN_REVIEW


def approvers(request: ExportRequest) -> list[str]:
    """The checkers who approved the request's current revision."""
    current = request.current.number
    return sorted(
        {r.reviewer for r in request.reviews if r.revision == current and r.decision == "approve"}
    )


def _review_events(
    request: ExportRequest, reviewer: str, decision: str, comment: str, source: str | None
) -> list[dict]:
    """The audit events of a review: the decision, and the release when it released."""
    revision = request.current.number
    common = {
        "actor": reviewer,
        "project": request.project,
        "target": _target(request.id),
        "source": source,
    }
    events = [
        {
            **common,
            "action": f"airlock.{decision}",
            "outcome": "ok",
            "note": comment or None,
            "detail": {"revision": revision},
        }
    ]
    if request.status == RELEASED:
        detail = {
            "revision": revision,
            "requester": request.requester,
            "files": request.release_record["files"],
        }
        events.append({**common, "action": "airlock.release", "outcome": "ok", "detail": detail})
    return events


def _submission_events(
    submission: Submission, request_id: int, action: str, number: int, files: list[ExportFile]
) -> list[dict]:
    """The audit events of a submission: the files as snapshotted, and what the checks found."""
    common = {
        "actor": submission.requester,
        "project": submission.project,
        "session": submission.session,
        "target": _target(request_id),
    }
    snapshots = [
        {"name": f.name, "role": f.role, "sha256": f.sha256, "size": f.size} for f in files
    ]
    return [
        {
            **common,
            "action": action,
            "outcome": "ok",
            "detail": {"revision": number, "files": snapshots},
        },
        {
            **common,
            "action": "airlock.checks",
            "outcome": worst(f.outcome for f in files),
            "detail": {"revision": number, "results": {f.name: f.outcome for f in files}},
        },
    ]


class Airlock:
    def __init__(
        self,
        url: str,
        store: AirlockStore,
        registry: Registry,
        rules: Rules,
        limits: Limits,
        record: Recorder,
    ):
        self.engine = open_engine(url)
        self._session = Sessions(self.engine, Base.metadata, lambda db: None)
        self._session.open_now("the airlock's database")
        self.store = store
        self.registry = registry
        self.rules = rules
        self.limits = limits
        self.record = record

    # -- submitting ----------------------------------------------------------------------------

    def submit(self, submission: Submission) -> dict:
        """Snapshot, check and queue a request (or a new revision of one); its description."""
        justification = self._justification(submission.justification)
        membership = self.registry.membership(submission.requester, submission.project)
        if membership is None:
            raise NotAllowed(
                f"{submission.requester} is not a member of project '{submission.project}' now"
            )
        environment = self._environment(submission.environment)
        snapshots = self._snapshots(submission.uploads)
        job = self._job(submission, snapshots)
        reports = run_checks(
            [(name, self.store.blob(sha), role) for name, role, sha, _ in snapshots],
            self.rules,
            self.limits.check_timeout,
            self.limits.check_memory,
        )
        outcome = worst(r["outcome"] for r in reports)
        now = now_utc()
        with self._session() as db:
            if submission.revises is None:
                request = ExportRequest(
                    project=submission.project,
                    requester=submission.requester,
                    created_at=now,
                )
                db.add(request)
                number, action = 1, "airlock.request"
            else:
                request = self._revisable(db, submission)
                number, action = request.current.number + 1, "airlock.revise"
            request.status = CHECKS_FAILED if outcome == "fail" else IN_REVIEW
            request.updated_at = now
            files = [
                ExportFile(
                    name=name,
                    role=role,
                    sha256=sha,
                    size=size,
                    kind=report["kind"],
                    outcome=report["outcome"],
                    findings=report["findings"],
                )
                for (name, role, sha, size), report in zip(snapshots, reports, strict=True)
            ]
            request.revisions.append(
                Revision(
                    number=number,
                    justification=justification,
                    session=submission.session,
                    submitted_at=now,
                    environment=environment,
                    datasets=self._dataset_versions(membership.datasets),
                    checks_outcome=outcome,
                    files=files,
                    job=None if job is None else RevisionJob(facts=job),
                )
            )
            db.flush()
            self._commit(db, *_submission_events(submission, request.id, action, number, files))
            return self._describe(request)

    def _job(self, submission: Submission, snapshots) -> dict | None:
        """The job named, as its outputs' provenance: each output must be a file it left, byte
        for byte. Its code's hash goes into the release record."""
        if submission.job is None:
            return None
        try:
            job = ended_job(self.registry, submission.job, submission.project)
        except DatabaseUnavailable:
            raise
        except RegistryError as error:
            raise InvalidRequest(str(error)) from None
        left = {output["sha256"] for output in job["outputs"] if output["sha256"]}
        for name, role, sha, _ in snapshots:
            if role == OUTPUT and sha not in left:
                raise InvalidRequest(
                    f"{name} is not an output of job {job['id']}: no file the job left in "
                    f"/project/jobs/{job['id']} has its content"
                )
        keep = ("id", "name", "kind", "code_sha256", "submitter", "profile", "parameters")
        return {key: job[key] for key in (*keep, "status", "started_at", "ended_at")}

    def _justification(self, text: str) -> str:
        text = (text or "").strip()
        if not text or len(text) > MAX_JUSTIFICATION:
            raise InvalidRequest(
                f"a justification is required: 1 to {MAX_JUSTIFICATION} characters saying what "
                "the files are and why they must leave"
            )
        return text

    @staticmethod
    def _environment(environment: object) -> dict:
        if not isinstance(environment, dict):
            raise InvalidRequest("the environment must be a JSON object")
        if len(json.dumps(environment)) > MAX_ENVIRONMENT:
            raise InvalidRequest(f"the environment is larger than {MAX_ENVIRONMENT} bytes")
        return environment

    def _snapshots(self, uploads: list[Upload]) -> list[tuple[str, str, str, int]]:
        """(name, role, sha256, size) of each upload, kept in the store."""
        if not any(u.role == OUTPUT for u in uploads):
            raise InvalidRequest("a request needs at least one file to release")
        if len(uploads) > self.limits.max_files:
            raise InvalidRequest(
                f"{len(uploads)} files: a request may hold at most {self.limits.max_files}"
            )
        names = [u.name for u in uploads]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise InvalidRequest(f"file(s) sent twice: {', '.join(repeated)}")
        snapshots, left = [], self.limits.max_request_size
        for upload in uploads:
            if upload.role not in (OUTPUT, SUPPORTING):
                raise InvalidRequest(f"role {upload.role!r} is not output or supporting")
            try:
                name = check_name(upload.name)
                sha, size = self.store.put(upload.content, left)
            except BadName as error:
                raise InvalidRequest(str(error)) from None
            except TooLarge:
                raise InvalidRequest(
                    f"the files add up to more than {self.limits.max_request_size} bytes, the "
                    f"most a request may hold (at {upload.name})"
                ) from None
            left -= size
            snapshots.append((name, upload.role, sha, size))
        return snapshots

    def _dataset_versions(self, datasets: tuple[str, ...]) -> dict:
        versions = {}
        for dataset in datasets:
            try:
                manifest = Dataset(dataset, self.registry.data_root).manifest
            except CatalogError:
                manifest = {}
            versions[dataset] = {"version": manifest.get("version"), "title": manifest.get("title")}
        return versions

    def _revisable(self, db: Session, submission: Submission) -> ExportRequest:
        request = self._request(db, submission.revises)
        if request.requester != submission.requester or request.project != submission.project:
            raise NotAllowed(f"request {request.id} is not yours in project '{submission.project}'")
        if request.status not in REVISABLE:
            raise AirlockError(
                f"request {request.id} is {request.status}; only a rejected request or one that "
                "failed its checks can be revised"
            )
        return request

    # -- reviewing -----------------------------------------------------------------------------

    def review(
        self,
        reviewer: str,
        request_id: int,
        decision: str,
        comment: str = "",
        source: str | None = None,
    ) -> dict:
        """An output checker's decision; the request is released once enough approve.
        `source` says where it was entered, when not in the checker's own browser."""
        if decision not in DECISIONS:
            raise InvalidRequest(f"decision {decision!r} is not approve or reject")
        comment = (comment or "").strip()
        if len(comment) > MAX_COMMENT:
            raise InvalidRequest(f"a comment may hold at most {MAX_COMMENT} characters")
        with self._session() as db:
            request = self._request(db, request_id)
            _may_review(request, reviewer, self.registry.checkers_of(request.project))
            _check_comment(request.current, decision, comment)
            now = now_utc()
            request.reviews.append(
                Review(
                    revision=request.current.number,
                    reviewer=reviewer,
                    decision=decision,
                    comment=comment,
                    at=now,
                )
            )
            request.updated_at = now
            request.status = _status_after_review(request, decision, self.limits.reviews_required)
            if request.status == RELEASED:
                request.release_record = release_record(request, now, self.rules.as_dict())
            events = _review_events(request, reviewer, decision, comment, source)
            db.flush()
            if request.status == RELEASED:
                self._release(db, request, events)
            else:
                self._commit(db, *events)
            return self._describe(request)

    def _release(self, db: Session, request: ExportRequest, events: list[dict]) -> None:
        """Put the released files in the requester's outbox, then record and commit; the
        outbox is emptied again when the release cannot be recorded or committed."""
        self._fill_outbox(request)
        try:
            self._commit(db, *events)
        except BaseException:
            self.store.withdraw(request.requester, request.id)
            raise

    def _fill_outbox(self, request: ExportRequest) -> None:
        outputs = [(f.name, f.sha256) for f in request.current.files if f.role == OUTPUT]
        self.store.release(request.requester, request.id, outputs, request.release_record)

    # -- reading -------------------------------------------------------------------------------

    def visible_to(self, username: str, platform_reader: bool = False) -> list[dict]:
        """The requests a person may see: their own, those of the projects they check, and all
        for admins and auditors; newest first."""
        checked = self.registry.checked_by(username)
        with self._session() as db:
            query = select(ExportRequest).order_by(ExportRequest.id.desc())
            if not platform_reader:
                query = query.where(
                    or_(ExportRequest.requester == username, ExportRequest.project.in_(checked))
                )
            return [self._summary(r, username, checked) for r in db.scalars(query)]

    def show(self, username: str, request_id: int, platform_reader: bool = False) -> dict:
        with self._session() as db:
            request = self._request(db, request_id)
            self._may_see(request, username, platform_reader)
            checks = username in self.registry.checkers_of(request.project)
            return {
                **self._describe(request),
                "may_review": checks and _awaits(request, username),
                "may_inspect": checks,
            }

    def released_file(self, username: str, request_id: int, name: str) -> Path:
        """A released file (or the release record) for its requester to download; recorded."""
        with self._session() as db:
            request = self._request(db, request_id)
            if request.requester != username:
                raise NotAllowed("only the requester downloads a release")
            if request.status != RELEASED:
                raise AirlockError(f"request {request.id} is {request.status}, not released")
            names = {f["name"] for f in request.release_record["files"]}
            if name not in names and name != "release.json":
                raise NotFound(f"'{name}' is not part of release {request.id}")
            if not self.store.outbox(request.requester, request.id).is_dir():
                self._fill_outbox(request)  # its commit's answer was lost, not the commit
            self._audit(
                {
                    "actor": username,
                    "project": request.project,
                    "target": _target(request.id),
                    "action": "airlock.download",
                    "outcome": "ok",
                    "note": name,
                }
            )
            return self.store.released_file(request.requester, request.id, name)

    def snapshot(self, username: str, request_id: int, name: str) -> Path:
        """A file of a request's current revision as snapshotted, for an output checker of its
        project to read; recorded."""
        with self._session() as db:
            request = self._request(db, request_id)
            if username not in self.registry.checkers_of(request.project):
                raise NotAllowed(
                    f"only output checkers of project '{request.project}' read its snapshots"
                )
            found = next((f for f in request.current.files if f.name == name), None)
            if found is None:
                raise NotFound(f"'{name}' is not a file of request {request.id}")
            self._audit(
                {
                    "actor": username,
                    "project": request.project,
                    "target": _target(request.id),
                    "action": "airlock.inspect",
                    "outcome": "ok",
                    "note": name,
                }
            )
            return self.store.blob(found.sha256)

    def _may_see(self, request: ExportRequest, username: str, platform_reader: bool) -> None:
        if platform_reader or request.requester == username:
            return
        if request.project in self.registry.checked_by(username):
            return
        raise NotFound(f"there is no request {request.id} that you may see")

    def _summary(self, request: ExportRequest, username: str, checked: list[str]) -> dict:
        revision = request.current
        return {
            "id": request.id,
            "project": request.project,
            "requester": request.requester,
            "status": request.status,
            "revision": revision.number,
            "checks": revision.checks_outcome,
            "files": [f.name for f in revision.files if f.role == OUTPUT],
            "updated_at": request.updated_at.isoformat(),
            "awaits_you": request.project in checked and _awaits(request, username),
            "approvals": len(approvers(request)),
            "approvals_required": self.limits.reviews_required,
        }

    @staticmethod
    def _describe(request: ExportRequest) -> dict:
        return {
            "id": request.id,
            "project": request.project,
            "requester": request.requester,
            "status": request.status,
            "created_at": request.created_at.isoformat(),
            "updated_at": request.updated_at.isoformat(),
            "revisions": [
                {
                    "number": r.number,
                    "justification": r.justification,
                    "session": r.session,
                    "submitted_at": r.submitted_at.isoformat(),
                    "checks": r.checks_outcome,
                    "datasets": r.datasets,
                    "job": r.job_facts,
                    "files": [
                        {
                            "name": f.name,
                            "role": f.role,
                            "sha256": f.sha256,
                            "size": f.size,
                            "kind": f.kind,
                            "outcome": f.outcome,
                            "findings": f.findings,
                        }
                        for f in r.files
                    ],
                }
                for r in request.revisions
            ],
            "reviews": [
                {
                    "reviewer": r.reviewer,
                    "revision": r.revision,
                    "decision": r.decision,
                    "comment": r.comment,
                    "at": r.at.isoformat(),
                }
                for r in request.reviews
            ],
            "release_record": request.release_record,
            "approved_by": approvers(request),
        }

    # -- helpers -------------------------------------------------------------------------------

    @staticmethod
    def _request(db: Session, request_id: int | None) -> ExportRequest:
        request = db.get(ExportRequest, request_id) if isinstance(request_id, int) else None
        if request is None:
            raise NotFound(f"there is no request {request_id}")
        return request

    def _audit(self, *events: dict) -> None:
        for body in events:
            try:
                self.record({k: v for k, v in body.items() if v is not None})
            except AuditRefused as error:
                raise AirlockError(f"refused: it cannot be audited ({error})") from None

    def _commit(self, db: Session, *events: dict) -> None:
        """Record the events, then commit; roll back if they cannot be recorded."""
        try:
            self._audit(*events)
        except AirlockError:
            db.rollback()
            raise
        db.commit()
