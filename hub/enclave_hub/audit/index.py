"""An in-memory index of the audit log, so that the console answers without reading it all.

For each record it keeps the time and small integer codes for actor, project, dataset, session
and action; for each actor, project, dataset and session the list of its records. A search
walks the shortest list that applies, newest first, checks the other filters against the
codes, and reads only the matching records from disk. About forty bytes a record.
"""

from __future__ import annotations

import bisect
import json
import threading
from array import array
from collections.abc import Callable, Iterable

from .query import Filters

KEYED_FIELDS = ("actor", "project", "dataset", "session")


class _Codes:
    """Interned strings: each distinct value of a field gets a small integer."""

    def __init__(self) -> None:
        self.code_of: dict[str, int] = {"": 0}
        self.values: list[str] = [""]

    def code(self, value: object) -> int:
        text = "" if value is None else str(value)
        found = self.code_of.get(text)
        if found is None:
            found = self.code_of[text] = len(self.values)
            self.values.append(text)
        return found


class LogIndex:
    """Codes and posting lists for every record added, in log order."""

    def __init__(self, read: Callable[[int], bytes]):
        self._read = read
        self._lock = threading.Lock()
        self.times = array("d")
        self._codes = {name: _Codes() for name in (*KEYED_FIELDS, "action")}
        self._columns = {name: array("l") for name in self._codes}
        self._postings: dict[str, dict[int, array]] = {name: {} for name in KEYED_FIELDS}
        self._early: dict[int, dict] = {}  # records whose predecessors are not indexed yet
        self._in_time_order = True  # then a period is found by bisection

    def add(self, seq: int, record: dict) -> None:
        """Index the record with this sequence number; records may arrive a little out of order."""
        with self._lock:
            self._early[seq] = record
            while len(self.times) in self._early:
                self._append(len(self.times), self._early.pop(len(self.times)))

    def _append(self, seq: int, record: dict) -> None:
        moment = float(record.get("time") or 0.0)
        if self.times and moment < self.times[-1]:
            self._in_time_order = False
        self.times.append(moment)
        for name, codes in self._codes.items():
            code = codes.code(record.get(name))
            self._columns[name].append(code)
            if name in self._postings and code:
                self._postings[name].setdefault(code, array("l")).append(seq)

    def add_all(self, records: Iterable[dict]) -> None:
        for record in records:
            self.add(record["seq"], record)

    def values(self, name: str) -> list[str]:
        """Every value of a keyed field in the log (the datasets ever named, say)."""
        with self._lock:
            return sorted(value for value in self._codes[name].code_of if value)

    def search(
        self,
        filters: Filters,
        session: str | None = None,
        limit: int = 500,
        before: int | None = None,
    ) -> list[dict]:
        """The newest `limit` records that match, newest first; with `before`, only records of
        a lower sequence number (the next page)."""
        wanted = {
            "actor": filters.user,
            "project": filters.project,
            "dataset": filters.dataset,
            "session": session,
        }
        with self._lock:
            size = len(self.times)
            keyed = []  # (postings, column, code) of each field asked for
            for name, value in wanted.items():
                if value is None:
                    continue
                code = self._codes[name].code_of.get(value)
                if code is None:
                    return []
                postings = self._postings[name].get(code, array("l"))
                keyed.append((postings, self._columns[name], code))
            keyed.sort(key=lambda item: len(item[0]))
            candidates = keyed[0][0] if keyed else range(size)
            if before is not None:
                candidates = candidates[: bisect.bisect_left(candidates, before)]
            checks = [(column, code) for _, column, code in keyed[1:]]
            actions = self._action_codes(filters.type)
            bounded = self._in_time_order
            if bounded:
                candidates = self._within(candidates, filters.since, filters.until)
        if not checks and actions is None and bounded:
            found = list(reversed(candidates[-limit:]))  # every candidate matches
        else:
            found = []
            for seq in reversed(candidates):
                if seq < size and self._matches(seq, checks, actions, None if bounded else filters):
                    found.append(seq)
                    if len(found) == limit:
                        break
        return [json.loads(self._read(seq)) for seq in found]

    def _within(self, seqs, since: float | None, until: float | None):
        """The part of an ascending list of records whose times lie in [since, until)."""
        at = self.times.__getitem__
        low = 0 if since is None else bisect.bisect_left(seqs, since, key=at)
        high = len(seqs) if until is None else bisect.bisect_left(seqs, until, key=at)
        return seqs[low:high]

    def _action_codes(self, family: str | None) -> set[int] | None:
        if family is None:
            return None
        values = self._codes["action"].values
        return {
            code
            for code, action in enumerate(values)
            if action == family or action.startswith(family + ".")
        }

    def _matches(self, seq: int, checks, actions: set[int] | None, period: Filters | None) -> bool:
        """Whether a record passes the other fields' checks, its action, and (if given) period."""
        for column, code in checks:
            if column[seq] != code:
                return False
        if actions is not None and self._columns["action"][seq] not in actions:
            return False
        if period is None:
            return True
        moment = self.times[seq]
        if period.since is not None and moment < period.since:
            return False
        return period.until is None or moment < period.until
