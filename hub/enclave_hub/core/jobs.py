"""Jobs: notebooks and scripts that a member submits from a session to run in a sandbox of their
project, apart from the session and outliving it. The job service (`enclave_hub.jobs`) runs
them; this is their book in the registry's database, which the service, the airlock (an export
may name a job) and `enclave job` read.

It keeps the code as submitted with its SHA-256, each project's queue and the order in which
jobs start (`startable`), and how each job ended. A project runs at most `jobs.per_project`
jobs at once, first come first served; a job whose profile has GPUs also waits its turn in the
one queue for the site's GPUs (`jobs.gpus`), each GPU held by one job at a time, so that a job
asking for two is not passed forever by jobs asking for one. Every change is recorded in the
audit log with the registry's own, and none is made unless it is recorded.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from sqlalchemy import select

from . import validation
from .registry import NotFound, Registry, RegistryError, aware, now_utc
from .registry_tables import Job

QUEUED, RUNNING = "queued", "running"
SUCCEEDED, FAILED, CANCELLED, STOPPED = "succeeded", "failed", "cancelled", "stopped"
ENDED = (SUCCEEDED, FAILED, CANCELLED, STOPPED)
# What a job's file is, by its suffix (compared in lower case).
KINDS = {".ipynb": "notebook", ".py": "python", ".r": "r"}
MAX_PARAMETERS = 64 * 1024
PARAMETER_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
MAX_REASON = 2000


def job_target(job_id: int) -> str:
    """A job as the audit log names it."""
    return f"job/{job_id}"


def code_sha256(code: bytes) -> str:
    return hashlib.sha256(code).hexdigest()


@dataclass(frozen=True)
class Submission:
    """A notebook or script to run, as a member's session sent it."""

    submitter: str
    project: str
    name: str
    code: bytes
    profile: str | None = None
    parameters: dict = field(default_factory=dict)
    session: str | None = None


@dataclass(frozen=True)
class Start:
    """A queued job that may start now, on these GPUs."""

    job_id: int
    gpus: tuple[int, ...]


def job_kind(name: str) -> str:
    """What a submitted file is, by its name: InvalidInput unless a notebook or a script."""
    path = PurePosixPath(name or "")
    if not name or path.name != name or name.startswith("."):
        raise validation.InvalidInput(f"job file {name!r}: give a file name, without folders")
    kind = KINDS.get(path.suffix.lower())
    if kind is None:
        known = ", ".join(sorted(KINDS))
        raise validation.InvalidInput(f"job file {name!r}: runs only {known} files")
    return kind


def _checked_code(name: str, kind: str, code: bytes, most: int) -> bytes:
    if not code:
        raise validation.InvalidInput(f"job file {name!r} is empty")
    if len(code) > most:
        raise validation.InvalidInput(
            f"job file {name!r} is {len(code)} bytes, more than the {most} a job may be"
        )
    if kind == "notebook":
        try:
            notebook = json.loads(code)
        except ValueError as error:
            raise validation.InvalidInput(f"job file {name!r} is not a notebook: {error}") from None
        if not isinstance(notebook, dict) or not isinstance(notebook.get("cells"), list):
            raise validation.InvalidInput(f"job file {name!r} is not a notebook: no cells")
    else:
        try:
            code.decode("utf-8")
        except UnicodeDecodeError:
            raise validation.InvalidInput(f"job file {name!r} is not UTF-8 text") from None
    return code


def _checked_parameters(parameters: object) -> dict:
    if not isinstance(parameters, dict):
        raise validation.InvalidInput("parameters: a mapping of names to values")
    for name in parameters:
        if not isinstance(name, str) or not PARAMETER_NAME.fullmatch(name):
            raise validation.InvalidInput(f"parameters: {name!r} is not a valid variable name")
    try:
        text = json.dumps(parameters)
    except (TypeError, ValueError) as error:
        raise validation.InvalidInput(f"parameters: not JSON values ({error})") from None
    if len(text) > MAX_PARAMETERS:
        raise validation.InvalidInput(f"parameters: more than {MAX_PARAMETERS} bytes as JSON")
    return parameters


def ended_job(registry: Registry, job_id: int | str, project_id: str) -> dict:
    """A job of `project_id` that has ended, with its outputs; NotFound if there is none,
    RegistryError if it has not ended (its outputs are known once it has)."""
    with registry.reading() as db:
        job = find_job(db, job_id, project_id)
        if job.status not in ENDED:
            raise RegistryError(f"job {job.id} is {job.status}: its outputs are known once it ends")
        return describe(job)


def find_job(db, job_id: int | str, project_id: str | None = None) -> Job:
    """Job `job_id` (of `project_id`, when given); NotFound if there is none."""
    job = db.get(Job, int(job_id)) if str(job_id).isdigit() else None
    if job is None or (project_id is not None and job.project_id != project_id):
        where = f" in project '{project_id}'" if project_id else ""
        raise NotFound(f"there is no job {job_id}{where}")
    return job


def _when(moment) -> str | None:
    return None if moment is None else aware(moment).isoformat()


def describe(job: Job, position: int | None = None, waiting_for: str = "") -> dict:
    """A job as its project's members, the airlock and `enclave job` see it (not its code)."""
    return {
        "id": job.id,
        "project": job.project_id,
        "submitter": job.submitter,
        "session": job.session,
        "name": job.name,
        "kind": job.kind,
        "code_sha256": job.code_sha256,
        "profile": job.profile,
        "parameters": job.parameters,
        "status": job.status,
        "position": position,
        "waiting_for": waiting_for,
        "reason": job.reason,
        "gpus": job.gpus,
        "exit_status": job.exit_status,
        "cancelled_by": job.cancelled_by,
        "outputs": job.outputs,
        "created_at": _when(job.created_at),
        "started_at": _when(job.started_at),
        "ended_at": _when(job.ended_at),
    }


class JobBook:
    """The jobs in the registry's database, under the site's job settings and profiles."""

    def __init__(
        self,
        registry: Registry,
        settings,
        profiles: Mapping,
        gpu_pool: Iterable[int] = (),
    ):
        self.registry = registry
        self.settings = settings
        self.profiles = profiles
        self.gpu_pool = tuple(gpu_pool)

    def gpus_of(self, profile: str) -> int:
        return self.profiles[profile].gpus

    # -- submitting ---------------------------------------------------------------------------

    def profiles_for(self, user: str, project_id: str) -> list[str]:
        """The profiles `user`'s jobs in `project_id` may run with, the project's own first."""
        return self._profiles(self._in_force(user, project_id))

    def _profiles(self, project) -> list[str]:
        return [project.profile, *self.profiles[project.profile].job_profiles]

    def _in_force(self, user: str, project_id: str):
        project = self.registry.membership(user, project_id)
        if project is None:
            raise RegistryError(
                f"{user} may not run jobs in project '{project_id}' now: the membership or "
                "the project is not in force"
            )
        return project

    def submit(self, submission: Submission) -> dict:
        """Queue a job; its description, with its place in the queue."""
        kind = job_kind(submission.name)
        code = _checked_code(
            submission.name, kind, submission.code, int(self.settings.max_code_size)
        )
        parameters = _checked_parameters(submission.parameters or {})
        project = self._in_force(submission.submitter, submission.project)
        allowed = self._profiles(project)
        profile = submission.profile or project.profile
        if profile not in allowed:
            raise validation.InvalidInput(
                f"profile {profile!r}: jobs of project '{project.id}' run with "
                + " or ".join(repr(p) for p in allowed)
            )
        if self.gpus_of(profile) > len(self.gpu_pool):
            raise validation.InvalidInput(
                f"profile {profile!r} asks for {self.gpus_of(profile)} GPU(s); jobs here have "
                f"{len(self.gpu_pool) or 'none'}"
            )
        job = Job(
            project_id=project.id,
            submitter=submission.submitter,
            session=submission.session,
            name=submission.name,
            kind=kind,
            code=code,
            code_sha256=code_sha256(code),
            profile=profile,
            parameters=parameters,
            status=QUEUED,
            created_at=now_utc(),
        )
        detail = {"name": job.name, "code_sha256": job.code_sha256, "profile": profile}
        if submission.session:
            detail["session"] = submission.session
        with self.registry.change(submission.submitter, "job.submit", project.id, detail) as db:
            waiting = db.scalars(
                select(Job.id).where(Job.project_id == project.id, Job.status == QUEUED)
            ).all()
            if len(waiting) >= self.settings.max_queued:
                raise RegistryError(
                    f"project '{project.id}' has {len(waiting)} jobs waiting already, the most "
                    "it may; cancel one or wait for them to start"
                )
            db.add(job)
            db.flush()
            detail["target"] = job_target(job.id)
        return self.show(job.id)

    # -- reading ------------------------------------------------------------------------------

    def jobs_of(self, project_id: str | None = None, statuses: Iterable[str] = ()) -> list[dict]:
        """Jobs, newest first, each waiting one with its place and what it waits for: of one
        project, or (None) of every project."""
        query = select(Job).order_by(Job.id.desc())
        if project_id is not None:
            query = query.where(Job.project_id == project_id)
        statuses = tuple(statuses)
        if statuses:
            query = query.where(Job.status.in_(statuses))
        with self.registry.reading() as db:
            found = db.scalars(query).all()
            places = self._places(db)
        return [describe(job, *places.get(job.id, (None, ""))) for job in found]

    def show(self, job_id: int | str, project_id: str | None = None) -> dict:
        """One job; NotFound if there is none (in `project_id`, when given)."""
        with self.registry.reading() as db:
            job = find_job(db, job_id, project_id)
            return describe(job, *self._places(db).get(job.id, (None, "")))

    def code_of(self, job_id: int) -> tuple[str, str, bytes]:
        """A job's file name, kind and code, as submitted."""
        with self.registry.reading() as db:
            job = find_job(db, job_id)
            return job.name, job.kind, job.code

    # -- the queue ----------------------------------------------------------------------------

    def startable(self) -> list[Start]:
        """The queued jobs that may start now, in order, with the GPUs each gets."""
        with self.registry.reading() as db:
            return self._plan(db)[0]

    def _places(self, db) -> dict[int, tuple[int, str]]:
        """Each queued job's place in its project's queue and what it waits for."""
        return self._plan(db)[1]

    def _plan(self, db) -> tuple[list[Start], dict[int, tuple[int, str]]]:
        running = db.scalars(select(Job).where(Job.status == RUNNING)).all()
        queued = db.scalars(select(Job).where(Job.status == QUEUED).order_by(Job.id)).all()
        busy = {project: 0 for project in {job.project_id for job in queued}}
        for job in running:
            busy[job.project_id] = busy.get(job.project_id, 0) + 1
        free_gpus = [g for g in self.gpu_pool if not any(g in job.gpus for job in running)]
        starts, places, positions = [], {}, {}
        gpu_line_held = False  # a job waits for GPUs: later GPU jobs wait behind it
        for job in queued:
            position = positions[job.project_id] = positions.get(job.project_id, 0) + 1
            gpus = self.gpus_of(job.profile) if job.profile in self.profiles else 0
            waiting_for = ""
            if position > 1:
                waiting_for = f"{position - 1} earlier job(s) of the project"
            elif busy[job.project_id] >= self.settings.per_project:
                waiting_for = f"the project's {self.settings.per_project} job slot(s), all in use"
            elif gpus and gpu_line_held:
                waiting_for = f"{gpus} GPU(s), after an earlier job waiting for GPUs"
            elif gpus > len(free_gpus):
                waiting_for = f"{gpus} GPU(s): {len(free_gpus)} free"
                gpu_line_held = True
            if waiting_for:
                places[job.id] = (position, waiting_for)
                continue
            taken, free_gpus = free_gpus[:gpus], free_gpus[gpus:]
            busy[job.project_id] += 1
            positions[job.project_id] -= 1  # it starts: the next one is first in line
            starts.append(Start(job.id, tuple(taken)))
            places[job.id] = (1, "")
        return starts, places

    # -- what becomes of a job ----------------------------------------------------------------

    def started(self, job_id: int, gpus: tuple[int, ...], sandbox: int) -> None:
        """Mark a queued job running; RegistryError (and it stays queued) unless recorded."""
        detail = {"target": job_target(job_id), "gpus": list(gpus), "sandbox": sandbox}
        with self.registry.reading() as db:
            job = find_job(db, job_id)
            actor, project = job.submitter, job.project_id
        with self.registry.change(actor, "job.start", project, detail) as db:
            job = find_job(db, job_id)
            if job.status != QUEUED:
                raise RegistryError(f"job {job_id} is {job.status}, not queued")
            job.status, job.gpus, job.started_at = RUNNING, list(gpus), now_utc()

    def ended(
        self,
        job_id: int,
        status: str,
        reason: str,
        exit_status: int | None = None,
        outputs: list[dict] = (),
    ) -> dict:
        """Record how a job ended (its outputs, as found in its folder)."""
        if status not in ENDED:
            raise ValueError(f"{status!r} is not an end")
        reason = reason[:MAX_REASON]
        with self.registry.reading() as db:
            job = find_job(db, job_id)
            actor, project = job.submitter, job.project_id
        detail = {"target": job_target(job_id), "status": status, "reason": reason}
        if exit_status is not None:
            detail["exit_status"] = exit_status
        detail["outputs"] = len(outputs)
        with self.registry.change(actor, "job.end", project, detail) as db:
            job = find_job(db, job_id)
            job.status, job.reason, job.exit_status = status, reason, exit_status
            job.outputs, job.ended_at = list(outputs), now_utc()
        return self.show(job_id)

    def cancel(self, actor: str, job_id: int | str, project_id: str | None = None) -> dict:
        """Cancel a job: a queued one ends now; a running one is stopped by the job service,
        which records its end."""
        with self.registry.reading() as db:
            project = find_job(db, job_id, project_id).project_id
        detail = {"target": job_target(int(job_id))}
        with self.registry.change(actor, "job.cancel", project, detail) as db:
            job = find_job(db, job_id, project_id)
            if job.status in ENDED:
                raise RegistryError(f"job {job.id} has ended already ({job.status})")
            if job.cancelled_by:
                raise RegistryError(f"job {job.id} is being cancelled already")
            job.cancelled_by = actor
            if job.status == QUEUED:
                job.status, job.ended_at = CANCELLED, now_utc()
                job.reason = f"cancelled by {actor} before it started"
        return self.show(job_id)
