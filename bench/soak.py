"""Soak: simulated users against one `enclave up` for a long while, with a fault every so often.

Each user goes round and round: log in through the provider's form, start a session, run cells,
request an export, stop. Every `--fault-every` seconds one fault is injected, in turn: kill -9
of the proxy, of the hub, of the audit service, of a running session's notebook server. A
failed step is counted with its reason and the user starts the round again.

Reported: rounds done and failed (by step, and how many came within a minute of a fault);
events acknowledged to a user against those found in the audit log afterwards (cells whose
answer came back, export requests given an id: every one must be there); and the resident
memory of each long-running process at the start and the end.

    .venv/bin/python bench/soak.py [--users 50] [--minutes 20] [--fault-every 120]

Needs root (sessions run under their own uids).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import os
import random
import re
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
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
    session_server_pids,
    session_url,
    set_provider_claims,
    start_enclave,
    write_site_config,
)
from enclave_hub.audit.query import records
from enclave_hub.local.leftovers import RunRecord

PROJECT = "soak"
CELLS_PER_ROUND = 3
FAULTS = ("proxy", "hub", "audit service", "session")
NEAR_A_FAULT = 60.0  # seconds: a failure this soon after a fault is put down to it
ANSI_COLOUR = re.compile(r"\x1b\[[0-9;]*m")
EXPORT_CELL = """
import os, enclave
os.makedirs("results", exist_ok=True)
with open("results/soak.csv", "w") as table:
    table.write("group,n\\na,{n}\\n")
print(enclave.request_export(["results/soak.csv"], justification="soak {marker}").id)
"""


@dataclass
class Tally:
    """What the users saw, shared by their threads."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    rounds: int = 0
    failures: list[tuple[float, str, str]] = field(default_factory=list)  # (when, step, why)
    cells: set[str] = field(default_factory=set)  # the code of each cell that answered
    requests: set[int] = field(default_factory=set)  # export requests given an id
    faults: list[tuple[float, str]] = field(default_factory=list)


def deploy(users: list[str]) -> RunningEnclave:
    overrides = {
        "projects": [{"id": PROJECT, "title": "Soak", "members": users}],
        "sessions": {"start_timeout": 300},
    }
    enclave = start_enclave(write_site_config(make_site_dir(), **overrides), timeout=240)
    for user in users:
        set_provider_claims(enclave, user, {"preferred_username": user, "groups": ["researchers"]})
    return enclave


def one_round(enclave: RunningEnclave, user: str, number: int, tally: Tally) -> None:
    """Log in, start, run cells, export, stop; raises (step, error) on the first failure."""
    step = "login"
    api = None
    try:
        client, landing = login(enclave, user)
        landing.raise_for_status()
        api = HubAPI(enclave, create_api_token(client, user))
        step = "start"
        response = api.start_session(user, PROJECT)
        if response.status_code not in (201, 202, 400):  # 400: still running from before
            raise RuntimeError(f"{response.status_code} {response.text[:120]}")
        api.wait_until_ready(user, PROJECT, timeout=300)
        step = "kernel"
        kernel = Kernel(session_url(enclave, user, PROJECT), api.token, timeout=120)
        kernel.wait_ready()
        for cell in range(CELLS_PER_ROUND):
            step = "cell"
            code = f"print(sum(range({number * 10 + cell})))  # soak {user} {number} {cell}"
            if kernel.execute(code) != f"{sum(range(number * 10 + cell))}\n":
                raise RuntimeError("a wrong answer")
            with tally.lock:
                tally.cells.add(code)
        step = "export"
        marker = f"{user} {number}"
        request = int(kernel.execute(EXPORT_CELL.format(n=number + 10, marker=marker)))
        with tally.lock:
            tally.requests.add(request)
        kernel.close()
        step = "stop"
        api.stop_session(user, PROJECT)
    except Exception as error:  # counted with its step, then the next round
        # the last line: where the error is a traceback, its exception
        lines = ANSI_COLOUR.sub("", str(error)).strip().splitlines()
        reason = (lines or [type(error).__name__])[-1][:160]
        with tally.lock:
            tally.failures.append((time.monotonic(), step, reason))
        if api is not None:  # a session left running would make the next start a 400
            with contextlib.suppress(Exception):  # the hub may be the part that is down
                api.http.delete(f"/users/{user}/servers/{PROJECT}")
        return
    with tally.lock:
        tally.rounds += 1


def user_loop(enclave: RunningEnclave, user: str, until: float, tally: Tally) -> None:
    number = 0
    time.sleep(random.uniform(0, 30))  # users arrive over half a minute
    while time.monotonic() < until:
        one_round(enclave, user, number, tally)
        number += 1
        time.sleep(random.uniform(2, 10))  # reading, thinking


def inject(enclave: RunningEnclave, kind: str, users: list[str]) -> str:
    """Kill one part as a crash would; what was killed."""
    if kind == "session":
        for user in random.sample(users, len(users)):
            pids = session_server_pids(enclave, user, PROJECT)
            if pids:
                os.kill(pids[0], signal.SIGKILL)
                return f"{user}'s notebook server (pid {pids[0]})"
        return "no session was running"
    (process,) = [p for p in RunRecord(enclave.state_dir / "run").processes() if p.name == kind]
    os.kill(process.pid, signal.SIGKILL)
    return f"the {kind} (pid {process.pid})"


def fault_loop(enclave, users: list[str], every: float, until: float, tally: Tally) -> None:
    for number in range(10**6):
        if time.monotonic() + every > until:
            return
        time.sleep(every)
        what = inject(enclave, FAULTS[number % len(FAULTS)], users)
        print(f"  fault {number + 1}: killed {what}", file=sys.stderr, flush=True)
        with tally.lock:
            tally.faults.append((time.monotonic(), what))


def memory_of(enclave: RunningEnclave) -> dict[str, tuple[int, int]]:
    """The pid and resident memory (bytes) of each long-running process of the deployment."""
    found = {}
    for process in RunRecord(enclave.state_dir / "run").processes():
        try:
            status = Path(f"/proc/{process.pid}/status").read_text()
        except OSError:
            continue
        (line,) = [line for line in status.splitlines() if line.startswith("VmRSS:")]
        found[process.name] = (process.pid, int(line.split()[1]) * 1024)
    return found


def logged(enclave: RunningEnclave) -> tuple[set[str], set[int]]:
    """The cells and export requests the audit log holds."""
    cells, requests = set(), set()
    for record in records(enclave.state_dir / "audit"):
        if record.get("action") == "cell.execute" and "# soak " in record.get("code", ""):
            cells.add(record["code"])
        elif record.get("action") == "airlock.request":
            requests.add(int(record["target"].rsplit("/", 1)[1]))
    return cells, requests


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--minutes", type=float, default=20)
    parser.add_argument("--fault-every", type=float, default=120, help="seconds")
    args = parser.parse_args()
    require_root()
    enclave_harness.HTTP_TIMEOUT = 300.0  # as long as the hub waits for a session to start
    users = [f"soak{i:02d}" for i in range(1, args.users + 1)]
    tally = Tally()
    enclave = deploy(users)
    try:
        memory_before = memory_of(enclave)
        start = time.monotonic()
        until = start + args.minutes * 60
        threads = [
            threading.Thread(target=user_loop, args=(enclave, user, until, tally)) for user in users
        ]
        threads.append(
            threading.Thread(
                target=fault_loop, args=(enclave, users, args.fault_every, until, tally)
            )
        )
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.monotonic() - start
        memory_after = memory_of(enclave)
    finally:
        stopped = enclave.stop(timeout=300)
    cells, requests = logged(enclave)
    report(args, tally, elapsed, cells, requests, memory_before, memory_after, stopped)


def report(args, tally: Tally, elapsed, cells, requests, before, after, stopped) -> None:
    fault_times = [when for when, _ in tally.faults]
    near = sum(
        any(0 <= when - fault < NEAR_A_FAULT for fault in fault_times)
        for when, _, _ in tally.failures
    )
    print(
        f"\nSoak: {args.users} users for {elapsed / 60:.1f} minutes, {len(tally.faults)} faults "
        f"(one every {args.fault_every:.0f} s); enclave up stopped with status {stopped}."
    )
    print(
        f"Rounds completed {tally.rounds}, failed {len(tally.failures)} "
        f"({near} within {NEAR_A_FAULT:.0f} s of a fault)."
    )
    by_step = collections.Counter(step for _, step, _ in tally.failures)
    for step, count in by_step.most_common():
        reasons = collections.Counter(why for _, s, why in tally.failures if s == step)
        print(f"  {step:<7}{count:>5}  e.g. {reasons.most_common(1)[0][0]}")
    print("\n| events | acknowledged | found in the log | acknowledged but missing |")
    print("| --- | --- | --- | --- |")
    for name, acked, found in (
        ("cells", tally.cells, cells),
        ("export requests", tally.requests, requests),
    ):
        print(f"| {name} | {len(acked)} | {len(acked & found)} | {len(acked - found)} |")
    print(
        f"(found but never acknowledged, the answer lost to a fault: "
        f"{len(cells - tally.cells)} cells, {len(requests - tally.requests)} requests)"
    )
    print("\n| process | resident at start | at end |")
    print("| --- | --- | --- |")
    for name in sorted(set(before) | set(after)):
        (pid, start), (end_pid, end) = before.get(name, (0, 0)), after.get(name, (0, 0))
        restarted = " (restarted)" if end_pid and end_pid != pid else ""
        print(f"| {name} | {start / 2**20:.0f} MiB | {end / 2**20:.0f} MiB{restarted} |")


if __name__ == "__main__":
    main()
