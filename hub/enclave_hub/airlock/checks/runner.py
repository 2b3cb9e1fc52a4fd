"""Running the checks of a request in a process of their own.

The files are untrusted: a parser could be made to use all memory or time, or worse. The
process runs as `nobody` (when the service runs as root), under limits of address space, CPU
time and file size it sets on itself before reading anything, and is killed after
`check_timeout` seconds. It gets each snapshot as an open file, never a path into the store.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from contextlib import ExitStack
from pathlib import Path

from . import FileReport, Finding, Rules

NOBODY = 65534
MODULE = "enclave_hub.airlock.checks"


class ChecksFailed(RuntimeError):
    """The checks process did not give an answer."""


def _every_file_fails(files: list[tuple[str, Path, str]], message: str) -> list[dict]:
    failed = [Finding("checks", "fail", message)]
    return [FileReport(name, "unchecked", failed).as_dict() for name, *_ in files]


def run_checks(
    files: list[tuple[str, Path, str]], rules: Rules, timeout: float, memory: int
) -> list[dict]:
    """Each file's report (`FileReport.as_dict`), in the order given."""
    with ExitStack() as stack:
        opened = [stack.enter_context(path.open("rb")) for _, path, _ in files]
        request = {
            "rules": rules.as_dict(),
            "limits": {"memory": memory, "cpu": int(timeout) + 1},
            "files": [
                {"name": name, "role": role, "fd": handle.fileno()}
                for (name, _, role), handle in zip(files, opened, strict=True)
            ],
        }
        drop = {"user": NOBODY, "group": NOBODY, "extra_groups": []} if os.geteuid() == 0 else {}
        process = subprocess.Popen(
            [sys.executable, "-m", MODULE],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            pass_fds=[handle.fileno() for handle in opened],
            env={
                "PATH": os.environ.get("PATH", ""),
                "LANG": "C.UTF-8",
                "HOME": "/nonexistent",
                "OPENBLAS_NUM_THREADS": "1",
            },
            cwd="/",
            **drop,
        )
        try:
            out, err = process.communicate(json.dumps(request).encode(), timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
            return _every_file_fails(files, f"the checks did not finish within {timeout:.0f} s")
    if process.returncode in (-signal.SIGXCPU, -signal.SIGKILL):
        return _every_file_fails(files, f"the checks did not finish within {timeout:.0f} s")
    if process.returncode != 0:
        last = err.decode(errors="replace").strip().splitlines()[-1:] or ["no message"]
        return _every_file_fails(files, f"the checks stopped with an error: {last[0]}")
    reports = json.loads(out)
    if [r["name"] for r in reports] != [name for name, *_ in files]:
        raise ChecksFailed("the checks answered for other files than those sent")
    return reports
