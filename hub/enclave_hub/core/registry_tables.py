"""The registry's tables (SQLAlchemy): projects, memberships, dataset grants, identities,
applications for access, the packages sessions may install, and jobs."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import (
    JSON,
    Date,
    DateTime,
    ForeignKey,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class Base(DeclarativeBase):
    pass


class Project(Base):
    __tablename__ = "projects"

    id: Mapped[str] = mapped_column(String(63), primary_key=True)
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(String(4000), default="")
    agreement: Mapped[str] = mapped_column(String(200), default="")  # data-use agreement ref
    starts: Mapped[date | None] = mapped_column(Date, nullable=True)
    ends: Mapped[date | None] = mapped_column(Date, nullable=True)
    status: Mapped[str] = mapped_column(String(20), default="active")
    profile: Mapped[str] = mapped_column(String(63), default="default")
    egress_allow: Mapped[list] = mapped_column(JSON, default=list)
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    members: Mapped[list[Membership]] = relationship(
        back_populates="project", cascade="all, delete-orphan", order_by="Membership.username"
    )
    grants: Mapped[list[DatasetGrant]] = relationship(
        back_populates="project", cascade="all, delete-orphan", order_by="DatasetGrant.dataset"
    )


class Membership(Base):
    __tablename__ = "memberships"
    __table_args__ = (UniqueConstraint("project_id", "username"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id"))
    username: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(20), default="researcher")
    granted_by: Mapped[str] = mapped_column(String(200))
    granted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)

    project: Mapped[Project] = relationship(back_populates="members")


class DatasetGrant(Base):
    __tablename__ = "dataset_grants"
    __table_args__ = (UniqueConstraint("project_id", "dataset"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id"))
    dataset: Mapped[str] = mapped_column(String(63))
    granted_by: Mapped[str] = mapped_column(String(200))
    granted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)

    project: Mapped[Project] = relationship(back_populates="grants")


class Revision(Base):
    """One row counting the registry's changes, whichever process made them."""

    __tablename__ = "revision"

    id: Mapped[int] = mapped_column(primary_key=True)
    number: Mapped[int] = mapped_column(default=0)


class Application(Base):
    """A researcher's application for a project: its datasets, members and end, and what
    became of it (`submitted`, then `approved` or `rejected` with a reason)."""

    __tablename__ = "access_applications"

    id: Mapped[int] = mapped_column(primary_key=True)
    applicant: Mapped[str] = mapped_column(String(64), index=True)
    project_id: Mapped[str] = mapped_column(String(63))
    title: Mapped[str] = mapped_column(String(200))
    datasets: Mapped[list] = mapped_column(JSON)
    members: Mapped[list] = mapped_column(JSON)
    justification: Mapped[str] = mapped_column(Text)
    ends: Mapped[date] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(20), default="submitted")
    reason: Mapped[str] = mapped_column(String(2000), default="")
    decided_by: Mapped[str | None] = mapped_column(String(200), nullable=True)
    decided_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class PackageAllowance(Base):
    """A package name sessions may install: for one project, or (no project) for all."""

    __tablename__ = "package_allowances"
    __table_args__ = (UniqueConstraint("name", "project_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), index=True)  # normalized (PEP 503)
    project_id: Mapped[str | None] = mapped_column(String(63), nullable=True)
    allowed_by: Mapped[str] = mapped_column(String(200))
    allowed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class PackageRequest(Base):
    """A researcher's request, from a session, that a package be allowed in their project;
    `requested`, then `approved` or `rejected` with the answer they read."""

    __tablename__ = "package_requests"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    project_id: Mapped[str] = mapped_column(String(63), index=True)
    requester: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(20), default="requested")
    answer: Mapped[str] = mapped_column(String(2000), default="")
    decided_by: Mapped[str | None] = mapped_column(String(200), nullable=True)
    decided_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Job(Base):
    """A notebook or script a member submitted to run apart from their session: its code as
    submitted, where it stands in its project's queue, and how it ended."""

    __tablename__ = "jobs"

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[str] = mapped_column(String(63), index=True)
    submitter: Mapped[str] = mapped_column(String(64))
    session: Mapped[str | None] = mapped_column(String(32), nullable=True)  # the session's run
    name: Mapped[str] = mapped_column(String(255))  # the file's name, e.g. analysis.ipynb
    kind: Mapped[str] = mapped_column(String(20))  # notebook, python or r
    code: Mapped[bytes] = mapped_column(LargeBinary)
    code_sha256: Mapped[str] = mapped_column(String(64))
    profile: Mapped[str] = mapped_column(String(63))
    parameters: Mapped[dict] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(20), index=True)
    reason: Mapped[str] = mapped_column(String(2000), default="")
    gpus: Mapped[list] = mapped_column(JSON, default=list)  # the GPUs it runs on, by index
    exit_status: Mapped[int | None] = mapped_column(nullable=True)
    cancelled_by: Mapped[str | None] = mapped_column(String(200), nullable=True)
    outputs: Mapped[list] = mapped_column(JSON, default=list)  # name, sha256, size of each
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class Identity(Base):
    """The identity-provider subject a username belongs to (the first to sign in with it)."""

    __tablename__ = "identities"
    __table_args__ = (UniqueConstraint("issuer", "subject"),)

    username: Mapped[str] = mapped_column(String(64), primary_key=True)
    issuer: Mapped[str] = mapped_column(String(400))
    subject: Mapped[str] = mapped_column(String(255))
    bound_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
