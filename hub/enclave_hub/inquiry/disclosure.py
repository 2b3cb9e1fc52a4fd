"""What the inquiry portal may say of a count of persons, and how often a person may ask.

A count below `min_count` is shown only as "fewer than N". Any other is rounded to the nearest
multiple of `round_to`, so two cohorts that differ by one person are answered alike unless
their counts straddle a rounding boundary; a person who probes for such a boundary, query by
query, meets the rate limit, and every query is in the audit log. Counts of the catalogue
(persons per dataset, per combination of kinds, per concept) are shown the same way.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True)
class ShownCount:
    """A count as the portal shows it: `value` (rounded) or None when below the threshold."""

    value: int | None
    text: str
    below: int | None = None  # the threshold, when the count is under it

    def as_dict(self) -> dict:
        return {"count": self.value, "text": self.text, "fewer_than": self.below}


@dataclass(frozen=True)
class Disclosure:
    min_count: int
    round_to: int

    def shown(self, count: int) -> ShownCount:
        if count < self.min_count:
            return ShownCount(None, f"fewer than {self.min_count}", self.min_count)
        rounded = max(
            self.min_count, self.round_to * ((count + self.round_to // 2) // self.round_to)
        )
        return ShownCount(rounded, f"about {rounded:,}" if self.round_to > 1 else f"{rounded:,}")


class RateLimit:
    """At most `per_minute` queries by one person in any 60 seconds."""

    WINDOW = 60.0

    def __init__(self, per_minute: int, clock=time.monotonic):
        self.per_minute = per_minute
        self._clock = clock
        self._asked: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def admit(self, person: str) -> float:
        """0 when `person` may ask now (and the query is counted), else the seconds to wait."""
        now = self._clock()
        with self._lock:
            asked = self._asked.setdefault(person, deque())
            while asked and now - asked[0] >= self.WINDOW:
                asked.popleft()
            if len(asked) >= self.per_minute:
                return self.WINDOW - (now - asked[0])
            asked.append(now)
            return 0.0
