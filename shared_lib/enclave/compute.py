"""Dask for this session's project: its cluster, through the deployment's gateway.

In a session the gateway's address, its scheduler proxy and the session's token come from the
environment the spawner sets, so `dask_gateway.Gateway()` works as it is; `dask_client` adds
the profile's defaults and clear errors. A session sees only the clusters it started.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from typing import Any

HEALTH_TIMEOUT = 10.0


class ClusterUnavailable(RuntimeError):
    """The gateway cannot be reached, or the session has no gateway configured."""


def _check_ready(address: str) -> None:
    """Raise ClusterUnavailable unless the gateway answers its health check."""
    try:
        with urllib.request.urlopen(f"{address}/api/health", timeout=HEALTH_TIMEOUT):
            return
    except (urllib.error.URLError, OSError) as error:
        raise ClusterUnavailable(
            f"The Dask gateway at {address} cannot be reached ({error}). It is restarted "
            "automatically after a failure: try again in a minute."
        ) from None


def dask_client(workers: int | None = None, **options: Any):
    """A `distributed.Client` of this session's cluster, started if there is none.

    A new cluster gets `workers` workers (the profile's default when None); `options` are the
    gateway's cluster options (`worker_cores`, `worker_memory` in GiB). `client.cluster` is
    the cluster: `client.cluster.adapt(minimum=1, maximum=4)` scales it with the work.
    """
    import aiohttp
    import dask
    from dask_gateway import Gateway

    address = dask.config.get("gateway.address", None)
    if not address:
        raise ClusterUnavailable(
            "No Dask gateway is configured: enclave.dask_client() works in an Enclave session"
        )
    _check_ready(address)
    try:
        with Gateway() as gateway:
            running = gateway.list_clusters()
            if running:
                return gateway.connect(running[0].name).get_client()
            if workers is not None:
                options["workers"] = workers
            # Refused before anything starts if the workers pass the project's limits.
            return gateway.new_cluster(**options).get_client()
    except (aiohttp.ClientConnectionError, OSError):
        _check_ready(address)  # gone since: say so; otherwise the error was the cluster's
        raise
