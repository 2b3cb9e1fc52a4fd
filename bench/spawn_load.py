"""Spawn latency and a load run: sandboxed sessions against JupyterHub's SimpleLocalProcessSpawner.

Both deployments run in this one process's run, each a real `enclave up` (provider, proxy, hub)
on loopback; the baseline differs only in its spawner (a plain local process, as root, no
sandbox). N simulated users each log in through the provider's form, start a session, start a
kernel and execute code in it, and stop, each of these begun by all at once when all have
ended the one before; the phases are reported hubtraf-style with p50, p95 and failures, and
the ratio sandbox / baseline.

    .venv/bin/python bench/spawn_load.py [--users 10 30] [--spawns 5]

Needs root (sessions run under their own uids). Target: the sandbox adds at most 15% to the
baseline's p50 spawn time, with no failures at N = 30.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import enclave_harness
from enclave_harness import (
    HubAPI,
    Kernel,
    RunningEnclave,
    create_api_token,
    login,
    make_site_dir,
    require_root,
    session_url,
    set_provider_claims,
    start_enclave,
    write_site_config,
)

PHASES = ("login", "server-start", "kernel-start", "code-execute", "server-stop")
# The phases every user begins at once; code runs as soon as its kernel is ready, as a kernel's
# websocket left idle while others start would be closed for want of an answer to its pings.
BEGUN_TOGETHER = ("login", "server-start", "kernel-start", "server-stop")
PROJECT = "load"
# How often spawn-to-ready asks the hub, both deployments alike: the time is known to this.
READY_POLL = 0.02
BASELINE_CONFIG = Path(__file__).with_name("baseline_spawner.py")


def _memory_used() -> int:
    fields = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
    kib = int(fields["MemTotal"].split()[0]) - int(fields["MemAvailable"].split()[0])
    return kib * 1024


@contextmanager
def peak_memory():
    """Sample the machine's used memory every 0.2 s; yield a dict that gets 'peak' added."""
    result = {"before": _memory_used(), "peak": 0}
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            result["peak"] = max(result["peak"], _memory_used())
            done.wait(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield result
    finally:
        done.set()
        sampler.join()


def deploy(kind: str, users: list[str]) -> RunningEnclave:
    overrides: dict = {
        "projects": [{"id": PROJECT, "title": "Load test", "members": users}],
        "sessions": {"start_timeout": 300},
    }
    if kind == "baseline":
        overrides["hub"] = {"extra_config": str(BASELINE_CONFIG)}
    base = make_site_dir()
    enclave = start_enclave(write_site_config(base, **overrides))
    for user in users:
        set_provider_claims(enclave, user, {"preferred_username": user, "groups": ["researchers"]})
    return enclave


def timed(phases: dict[str, float], name: str, action: Callable[[], object]) -> object:
    start = time.perf_counter()
    result = action()
    phases[name] = time.perf_counter() - start
    return result


def one_user(enclave: RunningEnclave, user: str, together: threading.Barrier) -> dict[str, float]:
    """One simulated user through every phase; raises on any failure. The phases of
    `BEGUN_TOGETHER` begin for every user at once (`together`), when every user has ended the
    one before: both deployments meet the same burst, however fast the phase before went."""
    phases: dict[str, float] = {}
    begun = 0

    def at_once(name: str, action: Callable[[], object]) -> object:
        nonlocal begun
        together.wait()
        begun += 1
        return timed(phases, name, action)

    def log_in() -> HubAPI:
        client, landing = login(enclave, user)
        landing.raise_for_status()
        return HubAPI(enclave, create_api_token(client, user))

    def start_server() -> None:
        response = api.start_session(user, PROJECT)
        if response.status_code not in (201, 202):
            raise RuntimeError(f"start: {response.status_code} {response.text[:200]}")
        api.wait_until_ready(user, PROJECT, timeout=300)

    def start_kernel() -> Kernel:
        kernel = Kernel(session_url(enclave, user, PROJECT), api.token, timeout=120)
        kernel.wait_ready()
        return kernel

    try:
        api = at_once("login", log_in)
        at_once("server-start", start_server)
        kernel = at_once("kernel-start", start_kernel)
        output = timed(phases, "code-execute", lambda: kernel.execute("print(sum(range(1000)))"))
        if output != "499500\n":
            raise RuntimeError(f"wrong answer {output!r}")
        kernel.close()
        at_once("server-stop", lambda: api.stop_session(user, PROJECT))
    except Exception:
        for _ in range(len(BEGUN_TOGETHER) - begun):  # the others' phases begin all the same
            together.wait()
        raise
    return phases


def load_run(enclave: RunningEnclave, users: list[str]) -> tuple[dict[str, list[float]], int]:
    """All users at once; return each phase's durations and the number of failed users."""
    durations: dict[str, list[float]] = {phase: [] for phase in PHASES}
    failures = 0
    together = threading.Barrier(len(users))
    with ThreadPoolExecutor(max_workers=len(users)) as pool:
        futures = [pool.submit(one_user, enclave, user, together) for user in users]
        for future in futures:
            try:
                for phase, seconds in future.result().items():
                    durations[phase].append(seconds)
            except Exception as error:  # a failed user is counted, and its reason shown
                failures += 1
                print(f"  failure: {error}", file=sys.stderr)
    return durations, failures


def spawn_latency(enclave: RunningEnclave, user: str, spawns: int) -> list[float]:
    """Spawn-to-ready of one user's session, started and stopped `spawns` times in turn."""
    client, _ = login(enclave, user)
    api = HubAPI(enclave, create_api_token(client, user))
    latencies = []
    for _ in range(spawns):
        start = time.perf_counter()
        response = api.start_session(user, PROJECT)
        response.raise_for_status()
        api.wait_until_ready(user, PROJECT, timeout=300, poll=READY_POLL)
        latencies.append(time.perf_counter() - start)
        api.stop_session(user, PROJECT)
    return latencies


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, nargs="+", default=[10, 30])
    parser.add_argument("--spawns", type=int, default=5)
    args = parser.parse_args()
    require_root()
    # Simulated users wait as long for an answer as the hub waits for a session to start,
    # so that a slow answer under load counts in the figures rather than as a failure.
    enclave_harness.HTTP_TIMEOUT = 300.0
    users = [f"user{i:02d}" for i in range(1, max(args.users) + 1)]
    results: dict[str, dict] = {}
    for kind in ("baseline", "enclave"):
        enclave = deploy(kind, users)
        try:
            latency = spawn_latency(enclave, users[0], args.spawns)
            runs = {}
            for n in args.users:
                with peak_memory() as memory:
                    durations, failures = load_run(enclave, users[:n])
                runs[n] = (durations, failures, memory["peak"] - memory["before"])
                print(f"{kind}: N={n} done, {failures} failure(s)", file=sys.stderr)
            results[kind] = {"latency": latency, "runs": runs}
        finally:
            enclave.stop()
    report(results, args)


def report(results: dict[str, dict], args: argparse.Namespace) -> None:
    base, ours = results["baseline"], results["enclave"]
    print(f"\nSpawn-to-ready, one user, {args.spawns} spawns in turn (seconds):")
    print(f"{'':14}{'baseline p50':>14}{'enclave p50':>14}{'ratio':>8}")
    b50, e50 = statistics.median(base["latency"]), statistics.median(ours["latency"])
    print(f"{'spawn':14}{b50:14.2f}{e50:14.2f}{e50 / b50:8.2f}")
    for n in args.users:
        b_durations, b_failures, b_memory = base["runs"][n]
        e_durations, e_failures, e_memory = ours["runs"][n]
        print(
            f"\nLoad run, N = {n} users at once (seconds; failures: baseline {b_failures}, "
            f"enclave {e_failures}; peak extra memory: baseline {b_memory / 2**30:.2f} GiB, "
            f"enclave {e_memory / 2**30:.2f} GiB):"
        )
        print(
            f"{'phase':14}{'base p50':>10}{'base p95':>10}{'encl p50':>10}{'encl p95':>10}"
            f"{'p50 ratio':>11}"
        )
        for phase in PHASES:
            bp50, bp95 = percentile(b_durations[phase], 50), percentile(b_durations[phase], 95)
            ep50, ep95 = percentile(e_durations[phase], 50), percentile(e_durations[phase], 95)
            print(f"{phase:14}{bp50:10.2f}{bp95:10.2f}{ep50:10.2f}{ep95:10.2f}{ep50 / bp50:11.2f}")


if __name__ == "__main__":
    main()
