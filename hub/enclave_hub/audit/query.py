"""Reading the audit log: records that match an auditor's filters, in log order."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from .store import read_frames, segments


def parse_time(text: str) -> float:
    """ISO 8601 (a date, or a date and time; UTC unless an offset is given) to epoch seconds."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"'{text}' is not a date or time in ISO 8601 form") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


@dataclass(frozen=True)
class Filters:
    """What an auditor asks for; an unset filter matches everything."""

    user: str | None = None
    project: str | None = None
    dataset: str | None = None
    type: str | None = None
    since: float | None = None
    until: float | None = None

    def match(self, record: dict) -> bool:
        action = str(record.get("action", ""))
        moment = record.get("time")
        return (
            (self.user is None or record.get("actor") == self.user)
            and (self.project is None or record.get("project") == self.project)
            and (self.dataset is None or record.get("dataset") == self.dataset)
            and (self.type is None or action == self.type or action.startswith(self.type + "."))
            and (self.since is None or (moment is not None and moment >= self.since))
            and (self.until is None or (moment is not None and moment < self.until))
        )


def records(folder: Path) -> Iterator[dict]:
    """Every intact record of the log, in order (verify first to trust them)."""
    for segment in segments(folder):
        for item in read_frames(segment):
            if item.payload is None:
                return
            yield json.loads(item.payload)


def query(folder: Path, filters: Filters) -> Iterator[dict]:
    return (record for record in records(folder) if filters.match(record))
