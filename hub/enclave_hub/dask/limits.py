"""A project's Dask limits, checked when a cluster is asked to grow.

The limits come from the project's profile (`sessions.profiles.<name>.dask` in the site
configuration, which the Helm chart renders from the same values): workers, cores and memory
per cluster, and over all the project's clusters together. A request past any of them is
refused as a whole, with a message that names the limit; nothing is scaled half-way.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..core.site_config import DaskLimits

GIB = 1024**3


class LimitExceeded(Exception):
    """A cluster may not grow as asked; the message names the limit and what is in use."""


@dataclass(frozen=True)
class Usage:
    """Workers, cores and memory (bytes) that some clusters hold or would hold."""

    workers: int = 0
    cores: int = 0
    memory: int = 0

    @classmethod
    def of(cls, workers: int, worker_cores: int, worker_memory: int) -> Usage:
        return cls(workers, workers * worker_cores, workers * worker_memory)

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.workers + other.workers,
            self.cores + other.cores,
            self.memory + other.memory,
        )


def _amount(what: str, value: int) -> str:
    if what == "memory":
        return f"{value / GIB:g} GiB of memory"
    return f"{value} {what}"


def check_growth(
    limits: DaskLimits, project: str, wanted: Usage, others: Usage, profile: str
) -> None:
    """Raise LimitExceeded unless a cluster may hold `wanted` while the project's other
    clusters hold `others`."""
    for what in ("workers", "cores", "memory"):
        asked = getattr(wanted, what)
        per_cluster = getattr(limits, f"cluster_{what}")
        if asked > per_cluster:
            raise LimitExceeded(
                f"refused: {_amount(what, asked)} in one cluster is more than project "
                f"{project} may use per cluster ({_amount(what, per_cluster)}, "
                f"profile '{profile}')"
            )
        in_all = getattr(limits, f"project_{what}")
        if asked + getattr(others, what) > in_all:
            raise LimitExceeded(
                f"refused: {_amount(what, asked)} in this cluster, with "
                f"{_amount(what, getattr(others, what))} in the project's other clusters, is "
                f"more than project {project} may use in all ({_amount(what, in_all)}, "
                f"profile '{profile}')"
            )


def allowed_workers(
    limits: DaskLimits, worker_cores: int, worker_memory: int, others: Usage
) -> int:
    """The most workers of this size one cluster may have beside the project's others."""
    bounds = [limits.cluster_workers, limits.project_workers - others.workers]
    for what, size in (("cores", worker_cores), ("memory", worker_memory)):
        if size:
            bounds.append(getattr(limits, f"cluster_{what}") // size)
            bounds.append((getattr(limits, f"project_{what}") - getattr(others, what)) // size)
    return max(0, min(bounds))
