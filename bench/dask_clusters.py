"""A Dask cluster from a session: Enclave's sandboxed gateway cluster against LocalCluster.

In one real session, in turns: the time until a 2-worker cluster is ready, and the time to run
10,000 small tasks (`client.map(inc, range(10_000))`, gathered), with the peak memory of the
cluster's processes: for Enclave the cluster's own cgroup, for `distributed.LocalCluster`
(2 worker processes of 1 thread, started in the same session) the session's cgroup above what
it used before. Each round starts from no cluster; the best of `--rounds` is reported, and the
median time to ready. A session's cluster is forked in the sandbox the gateway prepared for it
(`dask.prepared_clusters`, on by default), as a user's would be.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from enclave_harness import (
    HubAPI,
    Kernel,
    create_api_token,
    login,
    make_site_dir,
    require_root,
    session_url,
    set_provider_claims,
    start_enclave,
    write_site_config,
)
from enclave_hub.core.addresses import CLUSTER_NUMBERS, SESSION_NUMBERS
from enclave_hub.sandbox.cgroup import SessionCgroup, is_cgroup_v2
from enclave_hub.sandbox.network import numbers_in_use

USER, PROJECT, TASKS = "bench", "dask-bench", 10_000
PROFILE = {
    "cpus": 2,
    "memory": "8GiB",
    "pids": 4096,
    "dask": {"worker_cores": 1, "worker_memory": "2GiB", "default_workers": 2},
}
TASK_CELL = (
    "t = time.perf_counter()\n"
    f"assert sum(client.gather(client.map(lambda x: x + 1, range({TASKS})))) == "
    f"{sum(range(1, TASKS + 1))}\n"
    "tasks = time.perf_counter() - t\n"
)
LOCAL_CLUSTER = (
    "import json, time\n"
    "from distributed import Client, LocalCluster\n"
    "t = time.perf_counter()\n"
    "cluster = LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None)\n"
    "client = Client(cluster)\n"
    "client.wait_for_workers(2)\n"
    "ready = time.perf_counter() - t\n"
    + TASK_CELL
    + "print(json.dumps({'ready': ready, 'tasks': tasks}))\n"
)
ENCLAVE_CLUSTER = (
    "import enclave, json, time\n"
    "t = time.perf_counter()\n"
    "client = enclave.dask_client(workers=2)\n"
    "client.wait_for_workers(2)\n"
    "ready = time.perf_counter() - t\n"
    + TASK_CELL
    + "print(json.dumps({'ready': ready, 'tasks': tasks}))\n"
)
CLOSE = "client.close(); client.cluster.close() if hasattr(client.cluster, 'close') else None\n"
SHUTDOWN = "client.cluster.shutdown(); client.close()\n"


def _memory_file(cgroup: SessionCgroup) -> Path:
    folder = cgroup.folders[0]
    return folder / ("memory.peak" if is_cgroup_v2() else "memory.max_usage_in_bytes")


def _usage_file(cgroup: SessionCgroup) -> Path:
    folder = cgroup.folders[0]
    return folder / ("memory.current" if is_cgroup_v2() else "memory.usage_in_bytes")


def sandbox_cgroup(numbers: range) -> SessionCgroup:
    (number,) = sorted(numbers_in_use() & set(numbers))
    return SessionCgroup(f"s{number}")


def run_json(kernel: Kernel, code: str) -> dict:
    return json.loads(kernel.execute(code).strip().splitlines()[-1])


def local_round(kernel: Kernel) -> dict:
    session = sandbox_cgroup(SESSION_NUMBERS)
    before = int(_usage_file(session).read_text())
    if not is_cgroup_v2():
        _memory_file(session).write_text("0")  # the high-water mark starts afresh
    result = run_json(kernel, LOCAL_CLUSTER)
    result["memory"] = int(_memory_file(session).read_text()) - before
    kernel.execute(CLOSE)
    return result


def enclave_round(kernel: Kernel) -> dict:
    result = run_json(kernel, ENCLAVE_CLUSTER)
    result["memory"] = int(_memory_file(sandbox_cgroup(CLUSTER_NUMBERS)).read_text())
    kernel.execute(SHUTDOWN)
    deadline = time.monotonic() + 60
    while numbers_in_use() & set(CLUSTER_NUMBERS) and time.monotonic() < deadline:
        time.sleep(0.2)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    require_root()
    base = make_site_dir()
    overrides = {
        "projects": [{"id": PROJECT, "title": "Dask benchmark", "members": [USER]}],
        "sessions": {"profiles": {"default": PROFILE}},
    }
    enclave = start_enclave(write_site_config(base, **overrides))
    try:
        set_provider_claims(enclave, USER, {"preferred_username": USER, "groups": ["researchers"]})
        client, _ = login(enclave, USER)
        api = HubAPI(enclave, create_api_token(client, USER))
        api.start_session(USER, PROJECT)
        api.wait_until_ready(USER, PROJECT)
        kernel = Kernel(session_url(enclave, USER, PROJECT), api.token, timeout=300)
        kernel.wait_ready()
        rounds = {"LocalCluster": [], "Enclave": []}
        for number in range(args.rounds):
            rounds["LocalCluster"].append(local_round(kernel))
            rounds["Enclave"].append(enclave_round(kernel))
            print(f"round {number + 1}: {rounds}", file=sys.stderr)
        kernel.close()
        api.stop_session(USER, PROJECT)
    finally:
        enclave.stop()
    report(rounds, args.rounds)


def report(rounds: dict[str, list[dict]], count: int) -> None:
    best = {
        name: {key: min(r[key] for r in results) for key in ("ready", "tasks", "memory")}
        for name, results in rounds.items()
    }
    middle = {name: statistics.median(r["ready"] for r in found) for name, found in rounds.items()}
    local, ours = best["LocalCluster"], best["Enclave"]
    print(f"\n2 workers of 1 thread; {TASKS:,} tasks; best of {count} rounds (and their median)")
    print(f"{'':14}{'ready (s)':>11}{'median':>8}{'tasks (s)':>11}{'tasks/s':>10}{'peak MiB':>10}")
    for name, figures in best.items():
        print(
            f"{name:14}{figures['ready']:11.2f}{middle[name]:8.2f}{figures['tasks']:11.2f}"
            f"{TASKS / figures['tasks']:10.0f}{figures['memory'] / 2**20:10.0f}"
        )
    print(
        f"\nEnclave / LocalCluster: time to ready {ours['ready'] / local['ready']:.2f}x "
        f"(median {middle['Enclave'] / middle['LocalCluster']:.2f}x), "
        f"task throughput {local['tasks'] / ours['tasks']:.2f}x"
    )


if __name__ == "__main__":
    main()
