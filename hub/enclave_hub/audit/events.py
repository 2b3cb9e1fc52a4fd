"""What an audit record holds, and which events each kind of sender may send.

Every record carries the ISO 27001 A.8.15 fields: who acted (`actor`), what they did
(`action`, dotted: `session.start`), to what (`target`), in which `project`, with what
`outcome`, when (`time`, stamped by the audit service), from where (`source`, an address) and
in which notebook `session`. The platform (the hub and the services) may send any action;
a session may send only what its notebook server observes, and the service fills in who and
where from the token it used, whatever the body says.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

ACTION = re.compile(r"[a-z][a-z0-9_-]*(\.[a-z0-9_-]+)*")
# Fields the sender fills in, with their most length; anything else is refused.
TEXT_FIELDS = {
    "actor": 200,
    "target": 2000,
    "project": 200,
    "outcome": 200,
    "source": 100,
    "session": 100,
    "dataset": 200,
    "reason": 2000,
    "note": 2000,
}
CODE_LIMIT = 1024 * 1024
# The service sets these; a sender never may.
STAMPED_FIELDS = ("time", "seq", "prev")
# What a notebook server reports: the cells it passes to the kernel (and the debugger), the
# Contents API's file events, the kernels' lifecycle and what is typed into its terminals.
SESSION_ACTIONS = ("cell.execute", "file.", "kernel.", "terminal.")
# The audit service's own records (its key, its rotations, its storage faults): no sender's.
SERVICE_ACTIONS = ("audit.key", "audit.fault", "audit.recovered")
# Who and where: for a session these come from its token and its address, never the body.
SESSION_ATTRIBUTED = ("actor", "project", "session", "source")


class BadEvent(ValueError):
    """An event that cannot be recorded as sent; the message names the field."""


@dataclass(frozen=True)
class SessionIdentity:
    """A notebook session, as established from its token."""

    user: str
    project: str
    session: str | None


def _check_fields(body: dict[str, Any]) -> dict[str, Any]:
    event: dict[str, Any] = {}
    for key, value in body.items():
        if key in STAMPED_FIELDS:
            raise BadEvent(f"'{key}' is set by the audit service, not by the sender")
        if key == "action":
            if not isinstance(value, str) or not ACTION.fullmatch(value):
                raise BadEvent(f"'action' must be lower-case words joined by dots, not {value!r}")
            if any(value == a or value.startswith(f"{a}.") for a in SERVICE_ACTIONS):
                raise BadEvent(f"'{value}' is recorded by the audit service alone")
        elif key == "code":
            if not isinstance(value, str) or len(value) > CODE_LIMIT:
                raise BadEvent(f"'code' must be text of at most {CODE_LIMIT} characters")
        elif key == "count":
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise BadEvent("'count' must be a whole number")
        elif key == "detail":
            if not isinstance(value, dict):
                raise BadEvent("'detail' must be an object")
        elif key in TEXT_FIELDS:
            if value is not None and (not isinstance(value, str) or len(value) > TEXT_FIELDS[key]):
                raise BadEvent(f"'{key}' must be text of at most {TEXT_FIELDS[key]} characters")
        else:
            raise BadEvent(f"'{key}' is not a field of an audit event")
        event[key] = value
    if "action" not in event:
        raise BadEvent("'action' is required")
    return event


def platform_event(body: Any) -> dict[str, Any]:
    """An event sent by the hub or a service, checked field by field."""
    if not isinstance(body, dict):
        raise BadEvent("an audit event must be a JSON object")
    event = _check_fields(body)
    if "actor" not in event:
        raise BadEvent("'actor' is required")
    return event


def session_event(body: Any, identity: SessionIdentity, address: str) -> dict[str, Any]:
    """An event sent by a notebook session, attributed to the session that holds the token."""
    if not isinstance(body, dict):
        raise BadEvent("an audit event must be a JSON object")
    event = _check_fields({k: v for k, v in body.items() if k not in SESSION_ATTRIBUTED})
    action = event["action"]
    if not any(action == a or (a.endswith(".") and action.startswith(a)) for a in SESSION_ACTIONS):
        raise BadEvent(f"a session may not record '{action}'")
    return {
        **event,
        "actor": identity.user,
        "project": identity.project,
        "session": identity.session,
        "source": address,
    }
