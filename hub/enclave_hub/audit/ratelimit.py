"""Failed logins are counted, not all recorded, so that a flood cannot fill the log.

For each sender (source address and claimed user) the first `limit` failures of a window are
recorded one by one; the rest are counted, and one record per window gives their number.
"""

from __future__ import annotations

from dataclasses import dataclass

Key = tuple[str, str]


@dataclass
class _Window:
    start: float
    seen: int = 0
    suppressed: int = 0


class FailureLimiter:
    """A fixed-window limit per key."""

    def __init__(self, limit: int = 5, window: float = 60.0):
        self.limit = limit
        self.window = window
        self._windows: dict[Key, _Window] = {}
        self._ended: list[tuple[Key, int]] = []

    def admit(self, key: Key, now: float) -> bool:
        """Whether this failure is recorded on its own (else it is only counted)."""
        current = self._windows.get(key)
        if current is None or now - current.start >= self.window:
            if current is not None and current.suppressed:
                self._ended.append((key, current.suppressed))
            current = self._windows[key] = _Window(start=now)
        current.seen += 1
        if current.seen <= self.limit:
            return True
        current.suppressed += 1
        return False

    def ended(self, now: float) -> list[tuple[Key, int]]:
        """Windows over with failures counted but not recorded: (key, how many)."""
        reports, self._ended = self._ended, []
        for key, current in list(self._windows.items()):
            if now - current.start >= self.window:
                del self._windows[key]
                if current.suppressed:
                    reports.append((key, current.suppressed))
        return reports
