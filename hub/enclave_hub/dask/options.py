"""The options a researcher may set on a cluster, bounded by the project's profile.

Declared as dask-gateway `Options`, which the gateway serves and the client reads; the
handler turns them into the cluster's configuration and marks the cluster with its project.
"""

from __future__ import annotations

from dask_gateway_server.options import Float, Integer, Options

from ..core.site_config import DaskLimits
from .limits import GIB
from .scheduler_start import WORKERS_VARIABLE

SMALLEST_WORKER_MEMORY_GIB = 0.25


def cluster_options(limits: DaskLimits, project: str) -> Options:
    """Worker cores and memory (the profile's by default, and at most) and the workers a
    cluster starts with (the profile's default; the project's limits bound it at start)."""
    memory_gib = limits.worker_memory / GIB

    def configure(options, user) -> dict:
        return {
            "worker_cores": options.worker_cores,
            "worker_threads": options.worker_cores,
            "worker_memory": int(options.worker_memory * GIB),
            "idle_timeout": limits.idle_timeout,
            "environment": {"ENCLAVE_PROJECT": project, WORKERS_VARIABLE: str(options.workers)},
        }

    return Options(
        Integer(
            "worker_cores",
            default=limits.worker_cores,
            min=1,
            max=limits.worker_cores,
            label="Worker cores",
        ),
        Float(
            "worker_memory",
            default=memory_gib,
            min=min(SMALLEST_WORKER_MEMORY_GIB, memory_gib),
            max=memory_gib,
            label="Worker memory (GiB)",
        ),
        Integer("workers", default=limits.default_workers, min=0, label="Workers at start"),
        handler=configure,
    )
