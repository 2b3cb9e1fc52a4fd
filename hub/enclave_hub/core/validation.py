"""Checking what admins type: project ids, usernames, roles, dates and dataset references.

Every check raises `InvalidInput` with a message that names the value and what is wrong,
before anything is created.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from pathlib import Path

from enclave.catalog import IDENTIFIER

USERNAME_PATTERN = r"[a-z0-9][a-z0-9._@-]{0,63}"
USERNAME = re.compile(USERNAME_PATTERN)
ROLES = ("researcher", "output-checker", "project-admin")
STATUSES = ("active", "suspended", "archived")


class InvalidInput(ValueError):
    """Input that is refused; the message says which and why."""


def identifier(value: str, what: str) -> str:
    """A project or dataset id: lower-case letters, digits, '-' and '_', at most 63."""
    if not isinstance(value, str) or not IDENTIFIER.fullmatch(value):
        shown = repr(value)[:80]
        raise InvalidInput(
            f"{what} {shown} is not valid: use 1 to 63 lower-case letters, digits, '-' or '_', "
            "starting with a letter or digit (no '/', '.', '%', spaces or control characters)"
        )
    return value


def username(value: str) -> str:
    """A username in its one form, lower-case as the hub makes it. Anything else is refused, not
    folded: letters of other scripts that look Latin, compatibility forms (fullwidth letters,
    ligatures), spaces and control characters, so that no two spellings name one person."""
    if not isinstance(value, str) or not value.isascii() or not USERNAME.fullmatch(value.lower()):
        raise InvalidInput(
            f"username {value!r} is not valid: use 1 to 64 ASCII letters, digits, '.', '_', '@' "
            "or '-', starting with a letter or digit"
        )
    return value.lower()


def role(value: str) -> str:
    if value not in ROLES:
        raise InvalidInput(f"role {value!r} is not one of {', '.join(ROLES)}")
    return value


def day(value: str | None, what: str) -> date | None:
    """An ISO 8601 date (YYYY-MM-DD), or None."""
    if value in (None, ""):
        return None
    try:
        return date.fromisoformat(value)
    except (TypeError, ValueError):
        raise InvalidInput(f"{what} {value!r} is not a date (YYYY-MM-DD)") from None


def moment(value: str | None, what: str) -> datetime | None:
    """An ISO 8601 date or date and time (UTC unless an offset is given), or None."""
    if value in (None, ""):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        raise InvalidInput(f"{what} {value!r} is not an ISO 8601 date or time") from None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)


def dataset_folder(data_root: Path, dataset: str) -> Path:
    """The folder of a dataset: exactly one level under the data root, after resolving links."""
    identifier(dataset, "dataset")
    root = data_root.resolve()
    folder = (root / dataset).resolve()
    if folder.parent != root or folder.name != dataset:
        raise InvalidInput(f"dataset {dataset!r} resolves outside the data root {root}")
    if not folder.is_dir():
        raise InvalidInput(f"dataset {dataset!r} is not in the data root {root}")
    return folder
