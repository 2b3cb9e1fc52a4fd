"""Running one measurement in a child process, to know its own peak memory.

The child reports its own high-water mark (VmHWM, which starts afresh at exec): the rusage
of a forked child also counts the parent's pages it shared before exec.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
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
