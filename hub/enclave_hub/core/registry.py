"""The registry's operations: what admins change, and what the hub asks.

Every change names who made it and is recorded in the audit log before it is committed: if the
event cannot be recorded, the change is rolled back (a crash between the two leaves a record of
a change that did not happen, never a change without its record). Reads answer with
`ActiveProject`s, which hold only what is in force now: an active project within its dates, a
membership not expired, and the dataset grants not expired.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from pathlib import Path

from pydantic import TypeAdapter, ValidationError
from sqlalchemy import URL, Engine, MetaData, create_engine, event, select, update
from sqlalchemy.engine import ExceptionContext, make_url
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from . import validation
from .audit_client import AuditRefused, platform_recorder
from .registry_tables import Base, DatasetGrant, Membership, Project, Revision
from .site_config import HostPort, SiteConfig
from .site_config import Project as SeedProject

Recorder = Callable[[dict], None]
HOST_PORT = TypeAdapter(HostPort)
# Roles whose members start sessions and read the data; output checkers review exports only.
SESSION_ROLES = ("researcher", "project-admin")
CHECKER_ROLE = "output-checker"


class RegistryError(Exception):
    """A change that cannot be made (already a member, archived...); nothing changed."""


class NotFound(RegistryError):
    """No such project, member or grant."""


class DatabaseUnavailable(RegistryError):
    """The database server cannot be reached, or was lost in the middle of an operation:
    whatever asked for it is refused (HTTP 503), and works again once the server is back."""

    def __init__(self, database: str, reason: str):
        super().__init__(f"Enclave's database {database} is unavailable: try again when it is back")
        self.database = database
        self.reason = reason  # the driver's first line, for the logs

    def __reduce__(self):
        return type(self), (self.database, self.reason)

    @property
    def jupyterhub_message(self) -> str:
        """What the hub's pages show of it (JupyterHub reads this attribute of any error)."""
        return str(self)


@dataclass(frozen=True)
class ActiveProject:
    """A project as it stands for one member now."""

    id: str
    title: str
    profile: str
    role: str
    datasets: tuple[str, ...]
    egress_allow: tuple[str, ...]
    ends: datetime | None = None  # when the membership or the project ends, whichever is first

    def egress(self, site_allow: Iterable[HostPort]) -> list[HostPort]:
        """What its sandboxes may connect to: the site's allow-list and the project's own."""
        return [*site_allow, *map(HOST_PORT.validate_python, self.egress_allow)]

    def dataset_folders(self, data_root: Path) -> dict[str, Path]:
        """Its datasets' folders, each checked to lie right under the data root
        (`validation.InvalidInput` if one does not)."""
        return {d: validation.dataset_folder(data_root, d) for d in self.datasets}


def _first_end(expires: datetime | None, ends: date | None) -> datetime | None:
    """The sooner of a membership's expiry and its project's last day (to its last minute)."""
    project_end = None
    if ends is not None:
        project_end = datetime.combine(ends, time(23, 59), UTC)
    return min((e for e in (expires, project_end) if e is not None), default=None)


def waiting_row(db: Session, table: type, number: object, what: str, waiting: str):
    """Row `number` of `table` (a request of some kind, called `what`), still in its `waiting`
    status: NotFound if there is none, RegistryError if it was decided already."""
    row = db.get(table, int(number)) if str(number).isdigit() else None
    if row is None:
        raise NotFound(f"there is no {what} {number}")
    if row.status != waiting:
        raise RegistryError(f"{what} {number} is already {row.status}")
    return row


def now_utc() -> datetime:
    return datetime.now(UTC)


def aware(moment: datetime | None) -> datetime | None:
    """Times read back from SQLite lose their zone; they were stored in UTC."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


def in_force(expires: datetime | None, now: datetime) -> bool:
    return expires is None or now < aware(expires)


def project_open(project: Project, today: date) -> bool:
    return (
        project.status == "active"
        and (project.starts is None or project.starts <= today)
        and (project.ends is None or today <= project.ends)
    )


def _sqlite_pragmas(connection, _record) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


# A file holding the PostgreSQL password (on Kubernetes, from the Secret the chart mounts),
# used where libpq's own PGPASSWORD is not set.
PASSWORD_FILE_VARIABLE = "ENCLAVE_DATABASE_PASSWORD_FILE"


def _connect_args(url: str) -> dict[str, str]:
    path = os.environ.get(PASSWORD_FILE_VARIABLE)
    if not url.startswith("postgresql") or not path or "PGPASSWORD" in os.environ:
        return {}
    try:
        return {"password": Path(path).read_text().strip()}
    except OSError as error:
        raise RegistryError(
            f"{PASSWORD_FILE_VARIABLE}: cannot read the database password {path}: {error.strerror}"
        ) from None


# Seconds a connection to a database server is waited for (unless its URL says otherwise).
CONNECT_TIMEOUT = 10
# SQLSTATEs of a server that is going away or not yet there: its connection is lost (08...),
# it is shutting down (57P01, 57P02), or it is starting up or shutting down (57P03).
UNAVAILABLE_STATES = ("08", "57P01", "57P02", "57P03")


def shown_database(url: URL) -> str:
    """A database's URL as messages name it: without its password, options or driver."""
    shown = URL.create(url.get_backend_name(), url.username, None, url.host, url.port, url.database)
    return shown.render_as_string(hide_password=False)


def _unavailable(database: str) -> Callable[[ExceptionContext], None]:
    """A `handle_error` listener that turns a failed or lost connection into
    DatabaseUnavailable (the pool still discards the connection); other errors pass on."""

    def listener(context: ExceptionContext) -> None:
        if context.is_pre_ping:
            return  # the pool reconnects; if that fails too, the listener hears of it then
        original = context.original_exception
        state = getattr(original, "sqlstate", None) or ""
        connecting = context.connection is None
        if not (
            context.is_disconnect
            or (connecting and isinstance(context.sqlalchemy_exception, OperationalError))
            or (state and state.startswith(UNAVAILABLE_STATES))
        ):
            return
        reason = (str(original) or type(original).__name__).splitlines()[0]
        raise DatabaseUnavailable(database, reason)

    return listener


def open_engine(url: str) -> Engine:
    """The deployment's database (SQLite or PostgreSQL), shared by the registry and the airlock:
    SQLite in WAL mode, waiting for other processes' writes rather than failing. A server's
    connections are checked before each use, so that the engine recovers by itself once the
    server is back; while it is not, every operation raises DatabaseUnavailable."""
    connect_args: dict[str, object] = _connect_args(url)
    server = make_url(url).get_backend_name() != "sqlite"
    if server and "connect_timeout" not in make_url(url).query:
        connect_args["connect_timeout"] = CONNECT_TIMEOUT
    engine = create_engine(url, connect_args=connect_args, pool_pre_ping=server)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    else:
        event.listen(engine, "handle_error", _unavailable(shown_database(engine.url)))
    return engine


class Outage:
    """What a long-running loop says of a database outage: one line when it finds the database
    unavailable, one when it is back; nothing in between, however often it tries."""

    def __init__(self, who: str, say: Callable[[str], None]):
        self.who = who
        self.say = say
        self.since: datetime | None = None

    def failed(self, error: DatabaseUnavailable) -> None:
        if self.since is None:
            self.since = now_utc()
            unavailable = f"{error.database} is unavailable ({error.reason})"
            self.say(f"{self.who}: {unavailable}, will try again")

    def back(self) -> bool:
        """Note that the database answered; True when that ends an outage."""
        if self.since is None:
            return False
        seconds = (now_utc() - self.since).total_seconds()
        self.since = None
        self.say(f"{self.who}: the database is back after {seconds:.0f} s")
        return True


class Sessions:
    """Sessions of one database, its tables made (with `prepare`) before the first is given.

    A service started while its database server is down starts all the same: what needs the
    database is refused (DatabaseUnavailable) until the server answers, and the tables are
    made then. Call it for a session, as one calls a `sessionmaker`."""

    def __init__(self, engine: Engine, metadata: MetaData, prepare: Callable[[Session], None]):
        self.engine = engine
        self._metadata = metadata
        self._prepare = prepare
        self._make = sessionmaker(engine, expire_on_commit=False)
        self._lock = threading.Lock()
        self._ready = False

    def __call__(self) -> Session:
        if not self._ready:
            with self._lock:
                if not self._ready:
                    self._metadata.create_all(self.engine)
                    with self._make() as db:
                        self._prepare(db)
                    self._ready = True
        return self._make()

    def open_now(self, name: str) -> None:
        """Make the tables now, unless the server is down: a database that cannot be opened
        at all (a SQLite file in a missing folder, say) is an error naming it."""
        try:
            self().close()
        except DatabaseUnavailable:
            pass  # made when the server is back
        except OperationalError as error:
            raise RegistryError(f"cannot open {name} {self.engine.url!r}: {error.orig}") from None


def _first_revision(db: Session) -> None:
    if db.get(Revision, 1) is None:
        db.add(Revision(id=1, number=0))
        try:
            db.commit()
        except IntegrityError:
            db.rollback()  # another process made it first


class Registry:
    """Projects, memberships and grants in one SQL database (SQLite or PostgreSQL)."""

    def __init__(self, url: str, data_root: Path, profiles: Iterable[str], record: Recorder):
        self.engine = open_engine(url)
        self._session = Sessions(self.engine, Base.metadata, _first_revision)
        self._session.open_now("the project registry")
        self.data_root = data_root
        self.profiles = set(profiles)
        self.record = record

    @property
    def sessions(self) -> Sessions:
        """Sessions of the registry's database (whose tables include the identities)."""
        return self._session

    def __deepcopy__(self, memo: dict) -> Registry:
        # JupyterHub copies each spawner's configuration; all of them share one registry.
        return self

    # -- what the hub asks -------------------------------------------------------------------

    def revision(self) -> int:
        """How many changes the registry has seen: the reconciler acts when it moves."""
        with self._session() as db:
            return db.scalar(select(Revision.number).where(Revision.id == 1)) or 0

    def projects_of(self, username: str, now: datetime | None = None) -> list[ActiveProject]:
        """The projects `username` may start sessions for now."""
        now = now or now_utc()
        with self._session() as db:
            rows = db.scalars(
                select(Membership).where(Membership.username == username).join(Project)
            ).all()
            found = [self._active(m, now) for m in rows]
        return sorted((p for p in found if p is not None), key=lambda p: p.title)

    def membership(
        self, username: str, project_id: str, now: datetime | None = None
    ) -> ActiveProject | None:
        """The project if `username` may start a session for it now, else None."""
        now = now or now_utc()
        with self._session() as db:
            row = db.scalar(
                select(Membership).where(
                    Membership.username == username, Membership.project_id == project_id
                )
            )
            return None if row is None else self._active(row, now)

    def in_force(self, now: datetime | None = None) -> dict[tuple[str, str], ActiveProject]:
        """Every (user, project) allowed now, with what is granted: for the reconciler."""
        now = now or now_utc()
        with self._session() as db:
            rows = db.scalars(select(Membership).join(Project)).all()
            pairs = {(m.username, m.project_id): self._active(m, now) for m in rows}
        return {pair: project for pair, project in pairs.items() if project is not None}

    def checkers_of(self, project_id: str, now: datetime | None = None) -> set[str]:
        """The output checkers of a project open now, whose membership is in force."""
        now = now or now_utc()
        with self._session() as db:
            project = db.get(Project, project_id)
            if project is None or not project_open(project, now.date()):
                return set()
            return {
                m.username
                for m in project.members
                if m.role == CHECKER_ROLE and in_force(m.expires, now)
            }

    def checked_by(self, username: str, now: datetime | None = None) -> list[str]:
        """The open projects whose outputs `username` checks now."""
        now = now or now_utc()
        with self._session() as db:
            rows = db.scalars(
                select(Membership).where(
                    Membership.username == username, Membership.role == CHECKER_ROLE
                )
            ).all()
            return sorted(
                m.project_id
                for m in rows
                if project_open(m.project, now.date()) and in_force(m.expires, now)
            )

    def _active(self, membership: Membership, now: datetime) -> ActiveProject | None:
        """The project as it stands for a member who may start sessions, else None."""
        project = membership.project
        if membership.role not in SESSION_ROLES:
            return None
        if not project_open(project, now.date()) or not in_force(membership.expires, now):
            return None
        return ActiveProject(
            id=project.id,
            title=project.title,
            profile=project.profile,
            role=membership.role,
            datasets=tuple(g.dataset for g in project.grants if in_force(g.expires, now)),
            egress_allow=tuple(project.egress_allow or ()),
            ends=_first_end(aware(membership.expires), project.ends),
        )

    # -- what admins read ---------------------------------------------------------------------

    def list_projects(self) -> list[dict]:
        with self._session() as db:
            return [self._describe(p) for p in db.scalars(select(Project).order_by(Project.id))]

    def show(self, project_id: str) -> dict:
        with self._session() as db:
            return self._describe(self._project(db, project_id))

    @staticmethod
    def _describe(project: Project) -> dict:
        def when(moment):
            return None if moment is None else aware(moment).isoformat()

        return {
            "id": project.id,
            "title": project.title,
            "description": project.description,
            "agreement": project.agreement,
            "starts": project.starts.isoformat() if project.starts else None,
            "ends": project.ends.isoformat() if project.ends else None,
            "status": project.status,
            "profile": project.profile,
            "egress_allow": list(project.egress_allow or ()),
            "created_by": project.created_by,
            "created_at": when(project.created_at),
            "members": [
                {
                    "username": m.username,
                    "role": m.role,
                    "granted_by": m.granted_by,
                    "granted_at": when(m.granted_at),
                    "expires": when(m.expires),
                }
                for m in project.members
            ],
            "datasets": [
                {
                    "dataset": g.dataset,
                    "granted_by": g.granted_by,
                    "granted_at": when(g.granted_at),
                    "expires": when(g.expires),
                }
                for g in project.grants
            ],
        }

    # -- what admins change ---------------------------------------------------------------------

    def create_project(self, actor: str, project_id: str, title: str, **fields) -> dict:
        """A new project (`fields`: description, agreement, starts, ends, profile,
        egress_allow); RegistryError when the id is taken."""
        project = self.new_project(actor, project_id, title, **fields)
        with self._session() as db:
            if db.get(Project, project.id) is not None:
                raise RegistryError(f"project '{project.id}' already exists")
            db.add(project)
            self._commit(db, actor, "project.create", project.id, title=project.title)
        return self.show(project.id)

    def new_project(
        self,
        actor: str,
        project_id: str,
        title: str,
        description: str = "",
        agreement: str = "",
        starts: str | None = None,
        ends: str | None = None,
        profile: str = "default",
        egress_allow: Iterable[str] = (),
    ) -> Project:
        """A project checked field by field, not yet in the registry."""
        project = Project(
            id=validation.identifier(project_id, "project id"),
            title=self._title(title),
            description=description or "",
            agreement=agreement or "",
            starts=validation.day(starts, "start date"),
            ends=validation.day(ends, "end date"),
            status="active",
            profile=self._profile(profile),
            egress_allow=self._egress(egress_allow),
            created_by=actor,
            created_at=now_utc(),
        )
        if project.starts and project.ends and project.ends < project.starts:
            raise validation.InvalidInput(f"end date {ends} is before start date {starts}")
        return project

    def reading(self) -> Session:
        """A database session to read in beside these operations."""
        return self._session()

    @contextlib.contextmanager
    def change(
        self, actor: str, action: str, project_id: str | None, detail: dict
    ) -> Iterator[Session]:
        """A database session for a change made beside these operations (an application's
        approval): committed with its audit record once the block ends, `detail` as it is
        then (its `target`, if any, the record's target instead of the project); rolled back
        on any error."""
        with self._session() as db:
            yield db
            self._commit(db, actor, action, project_id, **detail)

    def update_project(self, actor: str, project_id: str, **fields: str | None) -> dict:
        """Change a project's title, description, agreement, dates or profile."""
        checks = {
            "title": self._title,
            "description": lambda v: v or "",
            "agreement": lambda v: v or "",
            "starts": lambda v: validation.day(v, "start date"),
            "ends": lambda v: validation.day(v, "end date"),
            "profile": self._profile,
        }
        unknown = set(fields) - set(checks)
        if unknown:
            raise validation.InvalidInput(f"cannot change {', '.join(sorted(unknown))}")
        values = {name: checks[name](value) for name, value in fields.items()}
        with self._session() as db:
            project = self._project(db, project_id)
            for name, value in values.items():
                setattr(project, name, value)
            if project.starts and project.ends and project.ends < project.starts:
                raise validation.InvalidInput(
                    f"end date {project.ends} is before start date {project.starts}"
                )
            changed = {name: str(value) for name, value in values.items()}
            self._commit(db, actor, "project.update", project.id, **changed)
        return self.show(project_id)

    def add_member(
        self, actor: str, project_id: str, user: str, role: str = "researcher", expires=None
    ) -> dict:
        name = validation.username(user)
        until = validation.moment(expires, "expiry")
        with self._session() as db:
            project = self._project(db, project_id)
            existing = next((m for m in project.members if m.username == name), None)
            if existing is not None:
                same = "" if user == name else f" (as '{name}')"
                raise RegistryError(f"'{user}' is already a member of '{project.id}'{same}")
            project.members.append(
                Membership(
                    username=name,
                    role=validation.role(role),
                    granted_by=actor,
                    granted_at=now_utc(),
                    expires=until,
                )
            )
            self._commit(db, actor, "project.member.add", project.id, member=name, role=role)
        return self.show(project_id)

    def remove_member(self, actor: str, project_id: str, user: str) -> dict:
        name = validation.username(user)
        with self._session() as db:
            project = self._project(db, project_id)
            membership = next((m for m in project.members if m.username == name), None)
            if membership is None:
                raise NotFound(f"'{name}' is not a member of '{project.id}'")
            project.members.remove(membership)
            self._commit(db, actor, "project.member.remove", project.id, member=name)
        return self.show(project_id)

    def grant(self, actor: str, project_id: str, dataset: str, expires=None) -> dict:
        validation.dataset_folder(self.data_root, dataset)
        until = validation.moment(expires, "expiry")
        with self._session() as db:
            project = self._project(db, project_id)
            if any(g.dataset == dataset for g in project.grants):
                raise RegistryError(f"dataset '{dataset}' is already granted to '{project.id}'")
            project.grants.append(
                DatasetGrant(dataset=dataset, granted_by=actor, granted_at=now_utc(), expires=until)
            )
            self._commit(db, actor, "project.dataset.grant", project.id, dataset=dataset)
        return self.show(project_id)

    def revoke(self, actor: str, project_id: str, dataset: str) -> dict:
        validation.identifier(dataset, "dataset")
        with self._session() as db:
            project = self._project(db, project_id)
            grant = next((g for g in project.grants if g.dataset == dataset), None)
            if grant is None:
                raise NotFound(f"dataset '{dataset}' is not granted to '{project.id}'")
            project.grants.remove(grant)
            self._commit(db, actor, "project.dataset.revoke", project.id, dataset=dataset)
        return self.show(project_id)

    def set_status(self, actor: str, project_id: str, status: str) -> dict:
        if status not in validation.STATUSES:
            raise validation.InvalidInput(
                f"status {status!r} is not one of {', '.join(validation.STATUSES)}"
            )
        with self._session() as db:
            project = self._project(db, project_id)
            if project.status == "archived" and status != "archived":
                raise RegistryError(f"project '{project.id}' is archived; it cannot be reopened")
            project.status = status
            self._commit(db, actor, f"project.{status}", project.id)
        return self.show(project_id)

    def seed(self, projects: Iterable[SeedProject], actor: str = "site configuration") -> None:
        """Fill an empty registry with the site configuration's seed projects."""
        with self._session() as db:
            if db.scalar(select(Project).limit(1)) is not None:
                return
        for seed in projects:
            self.create_project(actor, seed.id, seed.title, profile=seed.profile)
            for member in seed.members:
                self.add_member(actor, seed.id, member)
            for checker in seed.checkers:
                self.add_member(actor, seed.id, checker, CHECKER_ROLE)
            for dataset in seed.datasets:
                self.grant(actor, seed.id, dataset)

    # -- helpers ----------------------------------------------------------------------------------

    @staticmethod
    def _project(db: Session, project_id: str) -> Project:
        validation.identifier(project_id, "project id")
        project = db.get(Project, project_id)
        if project is None:
            raise NotFound(f"there is no project '{project_id}'")
        return project

    @staticmethod
    def _title(title: str) -> str:
        title = (title or "").strip()
        if not title or len(title) > 200 or any(ord(c) < 32 for c in title):
            raise validation.InvalidInput("a title is required: 1 to 200 printable characters")
        return title

    def _profile(self, profile: str) -> str:
        if profile not in self.profiles:
            known = ", ".join(sorted(self.profiles))
            raise validation.InvalidInput(f"profile {profile!r} is not one of {known}")
        return profile

    @staticmethod
    def _egress(entries: Iterable[str]) -> list[str]:
        try:
            return [str(HOST_PORT.validate_python(entry)) for entry in entries]
        except ValidationError as error:
            message = error.errors()[0]["msg"].removeprefix("Value error, ")
            raise validation.InvalidInput(f"egress allow-list: {message}") from None

    def _commit(
        self, db: Session, actor: str, action: str, project_id: str | None, **detail
    ) -> None:
        """Record the change in the audit log, then commit; roll back if it cannot be recorded."""
        try:
            db.flush()
        except IntegrityError:
            db.rollback()
            raise RegistryError(
                f"{action} of '{project_id}' conflicts with a change made meanwhile"
            ) from None
        target = detail.pop("target", project_id)
        event = {"actor": actor, "action": action, "target": target, "project": project_id}
        if "dataset" in detail:
            event["dataset"] = detail.pop("dataset")
        if detail:
            event["detail"] = detail
        db.execute(update(Revision).where(Revision.id == 1).values(number=Revision.number + 1))
        try:
            self.record({**event, "outcome": "ok"})
        except AuditRefused as error:
            db.rollback()
            raise RegistryError(f"nothing was changed: it cannot be audited ({error})") from None
        db.commit()


def _read_only(event: dict) -> None:
    raise RegistryError("this view of the registry is read-only")


def site_registry(site: SiteConfig, writable: bool = True) -> Registry:
    """The registry, recording its changes through the audit service (or read-only)."""
    record = platform_recorder(site) if writable else _read_only
    profiles = site.sessions.profiles.keys()
    return Registry(site.registry_url, site.data_root, profiles, record)
