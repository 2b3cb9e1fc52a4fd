"""Running one measurement in a child process, to know its own peak memory.

The child reports its own high-water mark (VmHWM, which starts afresh at exec): the rusage
of a forked child also counts the parent's pages it shared before exec. A command whose
processes have children of their own (workers) is measured from outside (`run_measured`):
the largest total resident memory of its process tree, sampled every 0.1 s, and no less than
any one process's own high-water mark.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable


def _kibibytes(path: str, field: str) -> int:
    """A `Field: N kB` line of a /proc file, in bytes."""
    with open(path) as lines:
        for line in lines:
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in {path}")


def peak_rss() -> int:
    """This process's peak resident memory, bytes."""
    return _kibibytes("/proc/self/status", "VmHWM")


def available_memory() -> int:
    """What this machine could still give a process, bytes."""
    return _kibibytes("/proc/meminfo", "MemAvailable")


def report(result: dict) -> None:
    """What a child prints: its result and its peak memory, as one JSON line."""
    print(json.dumps({**result, "peak_rss": peak_rss()}), flush=True)


def main_or_child(main: Callable[[], None], child: Callable[..., None]) -> None:
    """A benchmark's entry point: `child(ARGS...)` when started by `in_child`, else `main()`."""
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(*sys.argv[2:])
    else:
        main()


def in_child(script: str, *arguments: str) -> tuple[dict, int]:
    """Run `script --child ARGS...`, which ends by calling `report`; (its result, peak RSS)."""
    done = subprocess.run(
        [sys.executable, script, "--child", *arguments], stdout=subprocess.PIPE, text=True
    )
    if done.returncode != 0:
        raise RuntimeError(f"{script} {' '.join(arguments)} failed ({done.returncode})")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return result, result.pop("peak_rss")


def folder_bytes(path) -> int:
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(
        os.path.getsize(os.path.join(folder, name))
        for folder, _, names in os.walk(path)
        for name in names
    )


SAMPLE_EVERY = 0.1  # seconds between memory samples of a process tree


def _processes() -> dict[int, int]:
    """Every process's parent, by process id."""
    parents = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/stat") as stat:
                    parents[int(entry.name)] = int(stat.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    return parents


def _memory(pid: int) -> tuple[int, int]:
    """A process's resident memory and its high-water mark, bytes (0 once it has gone)."""
    found = {"VmRSS": 0, "VmHWM": 0}
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                key = line.split(":", 1)[0]
                if key in found:
                    found[key] = int(line.split()[1]) * 1024
    except OSError:
        pass
    return found["VmRSS"], found["VmHWM"]


def run_measured(command: list[str] | str, watch=None, **options) -> tuple[float, int]:
    """Run `command` (a shell line when a string); its seconds and the peak memory of its
    process tree. `watch(elapsed)` is called at every sample."""
    began = time.perf_counter()
    process = subprocess.Popen(command, shell=isinstance(command, str), **options)
    peak, done = 0, threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.wait(SAMPLE_EVERY):
            parents, tree, added = _processes(), set(), {process.pid}
            while added:
                tree |= added
                added = {pid for pid, parent in parents.items() if parent in tree} - tree
            memory = [_memory(pid) for pid in tree]
            peak = max(peak, sum(rss for rss, _ in memory), *(hwm for _, hwm in memory))
            if watch:
                watch(time.perf_counter() - began)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    code = process.wait()
    seconds = time.perf_counter() - began
    done.set()
    sampler.join()
    if code != 0:
        raise RuntimeError(f"{command} failed ({code})")
    return seconds, peak
