"""Which Python packages a project's sessions may install, and researchers' requests for more.

A name is allowed for a project when the site's `packages.allow` lists it, or an admin allowed
it for every project or for that one (`enclave packages allow`, or by approving a request in
the registry's pages). Names are compared as PEP 503 normalizes them (`Scikit_Learn` is
`scikit-learn`). Every change is recorded in the audit log with the registry's own changes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from sqlalchemy import or_, select

from . import validation
from .registry import NotFound, Registry, RegistryError, now_utc, waiting_row
from .registry_tables import PackageAllowance, PackageRequest, Project

REQUESTED, APPROVED, REJECTED = "requested", "approved", "rejected"
MAX_REASON = 2000
# PEP 508's project names.
NAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?")


def normalized_name(name: str) -> str:
    """A package's name as PEP 503 compares it; InvalidInput if it is not one."""
    text = (name or "").strip()
    if len(text) > 100 or not NAME.fullmatch(text):
        raise validation.InvalidInput(f"package name {name!r} is not a valid Python package name")
    return re.sub(r"[-_.]+", "-", text).lower()


class PackageAllowances:
    """The allowances and requests in the registry's database, beside the site's list."""

    def __init__(self, registry: Registry, site_allow: Iterable[str] = ()):
        self.registry = registry
        self.site_allow = frozenset(normalized_name(n) for n in site_allow)

    def allowed(self, project_id: str) -> frozenset[str]:
        """The names a session of `project_id` may install."""
        with self.registry.reading() as db:
            names = db.scalars(
                select(PackageAllowance.name).where(
                    or_(
                        PackageAllowance.project_id.is_(None),
                        PackageAllowance.project_id == project_id,
                    )
                )
            )
            return self.site_allow | set(names)

    def allowances(self) -> list[dict]:
        """The site's list and every allowance made since, by name."""
        with self.registry.reading() as db:
            made = db.scalars(select(PackageAllowance)).all()
        found = [
            {"name": n, "project": None, "allowed_by": "site configuration", "allowed_at": None}
            for n in self.site_allow
        ]
        found += [
            {
                "name": a.name,
                "project": a.project_id,
                "allowed_by": a.allowed_by,
                "allowed_at": a.allowed_at.isoformat(),
            }
            for a in made
        ]
        return sorted(found, key=lambda a: (a["name"], a["project"] or ""))

    def allow(self, actor: str, name: str, project_id: str | None = None) -> dict:
        """Allow `name` for `project_id`, or for every project."""
        name = normalized_name(name)
        detail = {"package": name, "target": f"package:{name}"}
        with self.registry.change(actor, "package.allow", project_id, detail) as db:
            self._allow(db, actor, name, project_id)
        return {"name": name, "project": project_id}

    def disallow(self, actor: str, name: str, project_id: str | None = None) -> None:
        """Withdraw an allowance made for `project_id` (or for every project)."""
        name = normalized_name(name)
        detail = {"package": name, "target": f"package:{name}"}
        with self.registry.change(actor, "package.disallow", project_id, detail) as db:
            found = db.scalar(self._allowance(name, project_id))
            if found is None:
                where = f"project '{project_id}'" if project_id else "every project"
                raise NotFound(f"package '{name}' has no allowance for {where}")
            db.delete(found)

    def request(self, requester: str, project_id: str, name: str, reason: str) -> dict:
        """A member's request, from a session of `project_id`, that `name` be allowed there."""
        name = normalized_name(name)
        reason = (reason or "").strip()
        if not reason or len(reason) > MAX_REASON:
            raise validation.InvalidInput(f"reason: required, at most {MAX_REASON} characters")
        if name in self.allowed(project_id):
            raise RegistryError(f"package '{name}' is allowed already: pip install {name}")
        request = PackageRequest(
            name=name,
            project_id=project_id,
            requester=requester,
            reason=reason,
            status=REQUESTED,
            created_at=now_utc(),
        )
        detail = {"package": name, "target": f"package:{name}"}
        with self.registry.change(requester, "package.request", project_id, detail) as db:
            waiting = select(PackageRequest.id).where(
                PackageRequest.name == name,
                PackageRequest.project_id == project_id,
                PackageRequest.status == REQUESTED,
            )
            if db.scalar(waiting) is not None:
                raise RegistryError(f"package '{name}' is requested already for this project")
            db.add(request)
        return _describe(request)

    def requests_of(self, requester: str, project_id: str) -> list[dict]:
        """A member's requests in a project, newest first."""
        with self.registry.reading() as db:
            found = db.scalars(
                select(PackageRequest)
                .where(
                    PackageRequest.requester == requester,
                    PackageRequest.project_id == project_id,
                )
                .order_by(PackageRequest.id.desc())
            ).all()
        return [_describe(r) for r in found]

    def all(self) -> list[dict]:
        """Every request: those waiting first, then the newest."""
        with self.registry.reading() as db:
            found = db.scalars(select(PackageRequest).order_by(PackageRequest.id.desc())).all()
        return [_describe(r) for r in sorted(found, key=lambda r: r.status != REQUESTED)]

    def approve(self, actor: str, request_id: int, answer: str = "") -> dict:
        """Allow the requested name in the request's project."""
        return self._decide(actor, request_id, APPROVED, (answer or "").strip())

    def reject(self, actor: str, request_id: int, answer: str) -> dict:
        """Refuse a request, with the answer the researcher reads."""
        answer = (answer or "").strip()
        if not answer:
            raise validation.InvalidInput("answer: the researcher is told why; it is required")
        return self._decide(actor, request_id, REJECTED, answer)

    def _decide(self, actor: str, request_id: int, status: str, answer: str) -> dict:
        if len(answer) > MAX_REASON:
            raise validation.InvalidInput(f"answer: at most {MAX_REASON} characters")
        with self.registry.reading() as db:
            waiting = self._waiting(db, request_id)
        detail = {"package": waiting.name, "request": waiting.id, "requester": waiting.requester}
        detail["target"] = f"package:{waiting.name}"
        action = "package.approve" if status == APPROVED else "package.reject"
        with self.registry.change(actor, action, waiting.project_id, detail) as db:
            request = self._waiting(db, request_id)
            if status == APPROVED:
                if db.get(Project, request.project_id) is None:
                    raise NotFound(f"project '{request.project_id}' is gone: reject the request")
                self._allow(db, actor, request.name, request.project_id)
            request.status, request.answer = status, answer
            request.decided_by, request.decided_at = actor, now_utc()
        return _describe(request)

    def _allow(self, db, actor: str, name: str, project_id: str | None) -> None:
        if project_id is not None and db.get(Project, project_id) is None:
            raise NotFound(f"there is no project '{project_id}'")
        if db.scalar(self._allowance(name, project_id)) is None:
            db.add(
                PackageAllowance(
                    name=name, project_id=project_id, allowed_by=actor, allowed_at=now_utc()
                )
            )

    @staticmethod
    def _allowance(name: str, project_id: str | None):
        where = (
            PackageAllowance.project_id.is_(None)
            if project_id is None
            else PackageAllowance.project_id == project_id
        )
        return select(PackageAllowance).where(PackageAllowance.name == name, where)

    @staticmethod
    def _waiting(db, request_id: int) -> PackageRequest:
        return waiting_row(db, PackageRequest, request_id, "package request", REQUESTED)


def _describe(request: PackageRequest) -> dict:
    return {
        "id": request.id,
        "name": request.name,
        "project": request.project_id,
        "requester": request.requester,
        "reason": request.reason,
        "status": request.status,
        "answer": request.answer,
        "decided_by": request.decided_by,
        "decided_at": request.decided_at.isoformat() if request.decided_at else None,
        "created_at": request.created_at.isoformat() if request.created_at else None,
    }
