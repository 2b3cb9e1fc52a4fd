"""The airlock's tables (SQLAlchemy), in the registry's database: requests, their revisions
and files, the jobs whose outputs a revision holds, and the checkers' reviews."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, BigInteger, DateTime, ForeignKey, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

# A request's status: where it waits, or how it ended.
CHECKS_FAILED = "checks-failed"  # the requester must revise it
IN_REVIEW = "in-review"
REJECTED = "rejected"  # the requester may revise it
RELEASED = "released"
REVISABLE = (CHECKS_FAILED, REJECTED)


class Base(DeclarativeBase):
    pass


class ExportRequest(Base):
    __tablename__ = "airlock_requests"

    id: Mapped[int] = mapped_column(primary_key=True)
    project: Mapped[str] = mapped_column(String(63), index=True)
    requester: Mapped[str] = mapped_column(String(64), index=True)
    status: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    release_record: Mapped[dict | None] = mapped_column(JSON, nullable=True)

    revisions: Mapped[list[Revision]] = relationship(
        back_populates="request", cascade="all, delete-orphan", order_by="Revision.number"
    )
    reviews: Mapped[list[Review]] = relationship(
        back_populates="request", cascade="all, delete-orphan", order_by="Review.id"
    )

    @property
    def current(self) -> Revision:
        return self.revisions[-1]


class Revision(Base):
    """One submission of a request: what was sent, why, from where, and what the checks found."""

    __tablename__ = "airlock_revisions"

    id: Mapped[int] = mapped_column(primary_key=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("airlock_requests.id"))
    number: Mapped[int]
    justification: Mapped[str] = mapped_column(Text)
    session: Mapped[str | None] = mapped_column(String(100), nullable=True)
    submitted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    environment: Mapped[dict] = mapped_column(JSON, default=dict)
    datasets: Mapped[dict] = mapped_column(JSON, default=dict)
    checks_outcome: Mapped[str] = mapped_column(String(10))

    request: Mapped[ExportRequest] = relationship(back_populates="revisions")
    files: Mapped[list[ExportFile]] = relationship(
        back_populates="revision", cascade="all, delete-orphan", order_by="ExportFile.id"
    )
    job: Mapped[RevisionJob | None] = relationship(
        back_populates="revision", cascade="all, delete-orphan"
    )

    @property
    def job_facts(self) -> dict | None:
        return None if self.job is None else self.job.facts


class ExportFile(Base):
    __tablename__ = "airlock_files"

    id: Mapped[int] = mapped_column(primary_key=True)
    revision_id: Mapped[int] = mapped_column(ForeignKey("airlock_revisions.id"))
    name: Mapped[str] = mapped_column(String(1000))
    role: Mapped[str] = mapped_column(String(20))  # output (released) or supporting (never)
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(String(20))
    outcome: Mapped[str] = mapped_column(String(10))
    findings: Mapped[list] = mapped_column(JSON, default=list)

    revision: Mapped[Revision] = relationship(back_populates="files")


class RevisionJob(Base):
    """The job whose outputs a revision holds, as it stood when they were submitted (a table of
    its own, so that databases made before jobs existed gain it as they are)."""

    __tablename__ = "airlock_revision_jobs"

    id: Mapped[int] = mapped_column(primary_key=True)
    revision_id: Mapped[int] = mapped_column(ForeignKey("airlock_revisions.id"), unique=True)
    facts: Mapped[dict] = mapped_column(JSON)

    revision: Mapped[Revision] = relationship(back_populates="job")


class Review(Base):
    __tablename__ = "airlock_reviews"

    id: Mapped[int] = mapped_column(primary_key=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("airlock_requests.id"))
    revision: Mapped[int]
    reviewer: Mapped[str] = mapped_column(String(64))
    decision: Mapped[str] = mapped_column(String(10))  # approve or reject
    comment: Mapped[str] = mapped_column(Text, default="")
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    request: Mapped[ExportRequest] = relationship(back_populates="reviews")
