"""Applications for access: a researcher asks for a project (its datasets, its members, why,
until when) from the inquiry portal; an admin approves it in the registry's pages, which opens
the project with its memberships and dataset grants, all ending on the requested day, in one
transaction with its audit record; or rejects it with a reason the applicant sees.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time

from sqlalchemy import select

from . import validation
from .registry import Registry, RegistryError, now_utc, waiting_row
from .registry_tables import Application, DatasetGrant, Membership, Project

SUBMITTED, APPROVED, REJECTED = "submitted", "approved", "rejected"
MAX_JUSTIFICATION = 4000
MAX_MEMBERS = 50


class Applications:
    """The applications in the registry's database, decided through `registry`."""

    def __init__(self, registry: Registry):
        self.registry = registry

    def submit(
        self,
        applicant: str,
        project_id: str,
        title: str,
        datasets: list[str],
        members: list[str],
        justification: str,
        ends: str,
    ) -> dict:
        """Record an application, checked field by field (InvalidInput names the field)."""
        validation.identifier(project_id, "project id")
        if not datasets:
            raise validation.InvalidInput("datasets: choose at least one")
        for dataset in datasets:
            validation.dataset_folder(self.registry.data_root, dataset)
        names = sorted({validation.username(m) for m in members} - {applicant})
        if len(names) > MAX_MEMBERS:
            raise validation.InvalidInput(f"members: at most {MAX_MEMBERS}")
        reason = (justification or "").strip()
        if not reason or len(reason) > MAX_JUSTIFICATION:
            raise validation.InvalidInput(
                f"justification: required, at most {MAX_JUSTIFICATION} characters"
            )
        until = validation.day(ends, "end date")
        if until is None or until <= date.today():
            raise validation.InvalidInput("end date: a day after today is required")
        self.registry.new_project(applicant, project_id, title)  # the id and title checked
        application = Application(
            applicant=applicant,
            project_id=project_id,
            title=title.strip(),
            datasets=sorted(set(datasets)),
            members=names,
            justification=reason,
            ends=until,
            status=SUBMITTED,
            created_at=now_utc(),
        )
        detail = {"datasets": application.datasets, "members": names}
        with self.registry.change(applicant, "application.submit", project_id, detail) as db:
            if db.get(Project, project_id) is not None or self._pending(db, project_id):
                raise RegistryError(f"project id '{project_id}' is taken: choose another")
            db.add(application)
        return _describe(application)

    def of(self, applicant: str) -> list[dict]:
        """The applicant's applications, newest first."""
        with self.registry.reading() as db:
            found = db.scalars(
                select(Application)
                .where(Application.applicant == applicant)
                .order_by(Application.id.desc())
            )
            return [_describe(a) for a in found]

    def all(self) -> list[dict]:
        """Every application: those waiting first, then the newest."""
        with self.registry.reading() as db:
            found = db.scalars(select(Application).order_by(Application.id.desc())).all()
        return [_describe(a) for a in sorted(found, key=lambda a: a.status != SUBMITTED)]

    def approve(self, actor: str, application_id: int) -> dict:
        """Open the project applied for: the applicant and members as researchers, the
        datasets granted, everything ending at the end of the requested day."""
        detail: dict = {}
        with self.registry.reading() as db:
            application = self._waiting(db, application_id)
        until = datetime.combine(application.ends, time.max, UTC)
        project = self.registry.new_project(
            actor,
            application.project_id,
            application.title,
            description=application.justification[:4000],
            ends=application.ends.isoformat(),
        )
        with self.registry.change(actor, "application.approve", project.id, detail) as db:
            application = self._waiting(db, application_id)
            if db.get(Project, project.id) is not None:
                raise RegistryError(f"project '{project.id}' exists already: reject or ask again")
            moment = now_utc()
            for name in [application.applicant, *application.members]:
                project.members.append(
                    Membership(
                        username=name,
                        role="researcher",
                        granted_by=actor,
                        granted_at=moment,
                        expires=until,
                    )
                )
            for dataset in application.datasets:
                validation.dataset_folder(self.registry.data_root, dataset)
                project.grants.append(
                    DatasetGrant(
                        dataset=dataset, granted_by=actor, granted_at=moment, expires=until
                    )
                )
            db.add(project)
            application.status, application.decided_by, application.decided_at = (
                APPROVED,
                actor,
                moment,
            )
            detail.update(application=application.id, applicant=application.applicant)
        return _describe(application)

    def reject(self, actor: str, application_id: int, reason: str) -> dict:
        """Refuse an application, with the reason its applicant reads."""
        reason = (reason or "").strip()
        if not reason:
            raise validation.InvalidInput("reason: the applicant is told why; it is required")
        detail: dict = {"reason": reason[:2000]}
        with self.registry.reading() as db:
            project_id = self._waiting(db, application_id).project_id
        with self.registry.change(actor, "application.reject", project_id, detail) as db:
            application = self._waiting(db, application_id)
            application.status, application.reason = REJECTED, reason[:2000]
            application.decided_by, application.decided_at = actor, now_utc()
            detail.update(application=application.id, applicant=application.applicant)
        return _describe(application)

    @staticmethod
    def _waiting(db, application_id: int) -> Application:
        return waiting_row(db, Application, application_id, "application", SUBMITTED)

    @staticmethod
    def _pending(db, project_id: str) -> bool:
        query = select(Application.id).where(
            Application.project_id == project_id, Application.status == SUBMITTED
        )
        return db.scalar(query) is not None


def _describe(application: Application) -> dict:
    return {
        "id": application.id,
        "applicant": application.applicant,
        "project": application.project_id,
        "title": application.title,
        "datasets": list(application.datasets),
        "members": list(application.members),
        "justification": application.justification,
        "ends": application.ends.isoformat(),
        "status": application.status,
        "reason": application.reason,
        "decided_by": application.decided_by,
        "decided_at": application.decided_at.isoformat() if application.decided_at else None,
        "created_at": application.created_at.isoformat() if application.created_at else None,
    }
