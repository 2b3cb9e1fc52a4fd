"""Failed logins are counted, not all recorded, so that a flood cannot fill the log.

In each window the first `per_source` failures from each address are recorded one by one, and
no more than `total` from all addresses together; the rest are counted. Once the window is over
one record gives how many were only counted, and from where (the busiest addresses). The
address is the one the hub saw the request come from, never one its sender wrote in a header.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

MOST_SOURCES_NAMED = 20  # in the one record of a window's suppressed failures
MOST_SOURCES_TRACKED = 10_000  # beyond that many addresses in one window, only the total counts


@dataclass
class Suppressed:
    """Failures of one window that were counted and not recorded."""

    count: int
    sources: dict[str, int]  # the busiest addresses, at most MOST_SOURCES_NAMED


@dataclass
class _Window:
    start: float
    recorded: int = 0
    seen: Counter = field(default_factory=Counter)
    suppressed: Counter = field(default_factory=Counter)
    untracked: int = 0  # suppressed from addresses beyond MOST_SOURCES_TRACKED


class FailureLimiter:
    """A fixed-window limit per address and in total."""

    def __init__(self, per_source: int = 5, total: int = 50, window: float = 60.0):
        self.per_source = per_source
        self.total = total
        self.window = window
        self._current: _Window | None = None
        self._ended: list[Suppressed] = []

    def admit(self, source: str, now: float) -> bool:
        """Whether this failure is recorded on its own (else it is only counted)."""
        current = self._window(now)
        if source in current.seen or len(current.seen) < MOST_SOURCES_TRACKED:
            current.seen[source] += 1
            if current.seen[source] <= self.per_source and current.recorded < self.total:
                current.recorded += 1
                return True
            current.suppressed[source] += 1
        else:
            current.untracked += 1
        return False

    def ended(self, now: float) -> list[Suppressed]:
        """What windows now over counted and did not record, one entry per window."""
        self._window(now)
        reports, self._ended = self._ended, []
        return reports

    def _window(self, now: float) -> _Window:
        current = self._current
        if current is not None and now - current.start < self.window:
            return current
        if current is not None and (current.suppressed or current.untracked):
            busiest = dict(current.suppressed.most_common(MOST_SOURCES_NAMED))
            total = sum(current.suppressed.values()) + current.untracked
            self._ended.append(Suppressed(total, busiest))
        self._current = _Window(start=now)
        return self._current
