"""Who a username is: the identity provider's subject (`sub`) that first signed in with it.

A provider's `preferred_username` is only a name its users may be able to choose; its subject
is the identity. A second subject claiming a name already held, or a subject coming back under
another name, is refused, so that no one signs in as another person by taking their name.
Bindings live in the registry's database and are recorded in the audit log before they count
(when the record cannot be written, `AuditRefused` passes on and nothing is bound).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from .registry_tables import Identity


class IdentityRefused(Exception):
    """The sign-in names a person it does not belong to; the message says how."""


class Identities:
    def __init__(self, sessions: Callable[[], Session], record: Callable[[dict], None]):
        self.sessions = sessions  # the registry's, whose tables include `identities`
        self.record = record

    def usernames(self) -> list[str]:
        """Everyone who has signed in, by name."""
        with self.sessions() as db:
            return sorted(db.scalars(select(Identity.username)))

    def bind(self, username: str, issuer: str, subject: str) -> None:
        """Accept `subject` of `issuer` as `username`, binding the two at the first sign-in."""
        with self.sessions() as db:
            held = db.get(Identity, username)
            if held is not None:
                if (held.issuer, held.subject) == (issuer, subject):
                    return
                raise IdentityRefused(
                    f"the name '{username}' belongs to another person at {held.issuer}; "
                    f"subject '{subject}' may not sign in with it"
                )
            other = db.scalar(
                select(Identity).where(Identity.issuer == issuer, Identity.subject == subject)
            )
            if other is not None:
                raise IdentityRefused(
                    f"subject '{subject}' of {issuer} signs in as '{other.username}', "
                    f"not as '{username}'"
                )
            db.add(Identity(username=username, issuer=issuer, subject=subject, bound_at=_now()))
            try:
                db.flush()
            except IntegrityError:
                raise IdentityRefused(f"'{username}' was bound meanwhile; sign in again") from None
            # AuditRefused passes on: nothing is bound, and the sign-in is refused.
            self.record(
                {
                    "actor": username,
                    "action": "identity.bind",
                    "target": f"user {username}",
                    "outcome": "ok",
                    "detail": {"issuer": issuer, "subject": subject},
                }
            )
            db.commit()


def _now() -> datetime:
    return datetime.now(UTC)
