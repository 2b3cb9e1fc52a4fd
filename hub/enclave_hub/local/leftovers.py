"""Processes and sandboxes that nothing owns any more, found and removed: what a run of
`enclave up` that ended without stopping (killed, or its machine lost power) left, sandboxes
whose hub record is gone (its database lost) found before each start of the hub, and any
sandbox still there once `enclave up` has stopped its components.

A running deployment keeps a record of its processes in `<state>/run/processes.json`, and its
sandboxes are marked by their folders in the workspace root, so only this deployment's
leftovers are touched, never another's on the same machine.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from .. import sandbox

SUPERVISOR = "enclave up"
STOP_TIMEOUT = 10.0


@dataclass(frozen=True)
class RecordedProcess:
    """A process of the deployment: its pid and start time name it (a reused pid does not)."""

    name: str
    pid: int
    started: int

    def alive(self) -> bool:
        return sandbox.process_start_time(self.pid) == self.started


class RunRecord:
    """The processes of the deployment that runs from one state folder."""

    def __init__(self, run_dir: Path):
        self.path = run_dir / "processes.json"

    def processes(self) -> list[RecordedProcess]:
        try:
            entries = json.loads(self.path.read_text())
        except FileNotFoundError:
            return []
        return [RecordedProcess(**entry) for entry in entries]

    def add(self, name: str, pid: int) -> None:
        """Record `pid` as the deployment's `name`, in place of an earlier process of that name."""
        started = sandbox.process_start_time(pid)
        if started is None:
            return
        kept = [p for p in self.processes() if p.name != name]
        entries = [asdict(p) for p in [*kept, RecordedProcess(name, pid, started)]]
        partial = self.path.with_suffix(".partial")
        partial.write_text(json.dumps(entries))
        partial.replace(self.path)

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)

    def running_supervisor(self) -> RecordedProcess | None:
        """The `enclave up` of this state folder, if one still runs."""
        return next((p for p in self.processes() if p.name == SUPERVISOR and p.alive()), None)


def stop_process_group(process: RecordedProcess) -> None:
    """SIGTERM to the process's group (each component leads its own), then SIGKILL."""
    for signum in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signum)
        deadline = time.monotonic() + STOP_TIMEOUT
        while process.alive() and time.monotonic() < deadline:
            time.sleep(0.1)
        if not process.alive():
            return


def remove_leftovers(record: RunRecord, workspace_root: Path, say: Callable[[str], None]) -> None:
    """Stop the processes an earlier run left, then remove its sandboxes; one line each."""
    for process in reversed(record.processes()):
        if process.name == SUPERVISOR:
            continue
        if process.alive():
            stop_process_group(process)
            say(f"An earlier run left its {process.name} running (pid {process.pid}): stopped it.")
        else:
            say(f"An earlier run's {process.name} (pid {process.pid}) had already exited.")
    record.clear()
    remove_sandboxes(set(), workspace_root, say, "an earlier run left")


def hub_owned_sandboxes(database: Path) -> set[int]:
    """The numbers of the sandboxes the hub's database records as its sessions'."""
    if not database.exists():
        return set()
    from jupyterhub import orm
    from sqlalchemy import create_engine, exc
    from sqlalchemy.orm import Session

    engine = create_engine(f"sqlite:///{database}")
    try:
        with Session(engine) as db:
            states = [state for (state,) in db.query(orm.Spawner.state)]
    except exc.OperationalError:  # a database the hub has not yet filled
        return set()
    finally:
        engine.dispose()
    return {state["sandbox_number"] for state in states if state and "sandbox_number" in state}


def remove_sandboxes(
    owned: set[int], workspace_root: Path, say: Callable[[str], None], how: str
) -> None:
    """Remove every sandbox of this deployment but the `owned` ones, each with a line saying
    `how` it was left and what of it was there."""
    for number in sandbox.built_numbers(workspace_root):
        if number in owned:
            continue
        box = sandbox.SessionSandbox.existing(number, workspace_root)
        parts = box.leftovers()
        processes = len(box.cgroup.pids())
        box.destroy()
        what = ", ".join(parts) + (f", {processes} processes" if processes else "")
        say(f"{how.capitalize()} sandbox {number} ({what}): removed it.")
