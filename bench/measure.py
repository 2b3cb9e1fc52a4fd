"""Running one measurement in a child process, to know its own peak memory.

The child reports its own high-water mark (VmHWM, which starts afresh at exec): the rusage
of a forked child also counts the parent's pages it shared before exec.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys


def peak_rss() -> int:
    """This process's peak resident memory, bytes."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def report(result: dict) -> None:
    """What a child prints: its result and its peak memory, as one JSON line."""
    print(json.dumps({**result, "peak_rss": peak_rss()}), flush=True)


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
