"""Preloaded into every cluster's scheduler beside dask-gateway's own preload.

The scheduler starts out asking for the workers its cluster was created with (the cluster's
`workers` option, in its environment) and tells the gateway at once, rather than asking for
none until a client scales it; the gateway has started those workers with the scheduler.
Nothing else of the scheduler changes. Imports nothing of Enclave: it runs in the cluster.
"""

from __future__ import annotations

import asyncio
import os

PRELOAD = __name__
WORKERS_VARIABLE = "ENCLAVE_CLUSTER_WORKERS"
_running: set[asyncio.Task] = set()


async def dask_setup(scheduler) -> None:
    # dask-gateway's preload may run after this one: act once every preload has run.
    task = asyncio.ensure_future(_ask_for_first_workers(scheduler))
    _running.add(task)
    task.add_done_callback(_running.discard)


async def _ask_for_first_workers(scheduler) -> None:
    await asyncio.sleep(0)
    service = scheduler.services["gateway"]
    workers = int(os.environ.get(WORKERS_VARIABLE, "0"))
    if service.count == 0 and workers > 0:
        service.count = workers
    await service.waiter.interrupt()  # the first heartbeat now, not in a quarter second
