"""The airlock's automatic checks of a file about to leave: what it is, and whether it may.

Each check gives findings, each `pass`, `flag` (a checker must look at it) or `fail` (it cannot
leave as it is). A file's outcome is its worst finding's. The checks read untrusted files, so
the airlock runs them in a process of their own with limits (`runner`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

OUTCOMES = ("pass", "flag", "fail")


@dataclass(frozen=True)
class Finding:
    """One rule applied to one file (or a part of it: a sheet, an archive member)."""

    rule: str
    outcome: str
    message: str

    def __post_init__(self) -> None:
        if self.outcome not in OUTCOMES:
            raise ValueError(f"outcome {self.outcome!r} is not one of {OUTCOMES}")


def worst(outcomes: Iterable[str]) -> str:
    """The worst of some outcomes ('pass' when there are none)."""
    return max(outcomes, key=OUTCOMES.index, default="pass")


@dataclass(frozen=True)
class Rules:
    """The limits and thresholds the checks apply (the site configuration's `airlock`)."""

    min_cell_count: int = 10
    dominance_share: float = 0.9
    p_ratio: float = 0.1
    max_table_rows: int = 1000
    min_allele_count: int = 20
    min_sample_size: int = 50
    max_file_size: int = 50 * 1024**2
    max_archive_members: int = 500
    max_expanded_size: int = 200 * 1024**2
    max_compression_ratio: int = 100

    @classmethod
    def of(cls, settings: Any) -> Rules:
        """The rules of a site's airlock settings."""
        return cls(**{name: getattr(settings, name) for name in cls.__dataclass_fields__})

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class FileReport:
    """What the checks found in one file."""

    name: str
    kind: str
    findings: list[Finding] = field(default_factory=list)

    @property
    def outcome(self) -> str:
        return worst(f.outcome for f in self.findings)

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "kind": self.kind,
            "outcome": self.outcome,
            "findings": [asdict(f) for f in self.findings],
        }
