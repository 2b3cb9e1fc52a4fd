"""A session's cgroup: memory, CPU and process-count limits, on cgroup v1 or v2.

Every sandbox's cgroup lies under one parent, which weighs what its sandboxes weigh together
(`weigh_sandboxes`): each as one process of the host, or next to nothing while it is idle
(`set_idle`: a sandbox prepared ahead of demand). Left at one process's weight, all the
sessions together would get, when the machine is busy, what a single process of the host gets
(the hub, the proxy, a service), and each session a share of that.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
PARENT = "enclave"
CPU_PERIOD_US = 100_000
# The least CPU weight, one process's, and the most: cpu.shares on v1, cpu.weight on v2.
CPU_WEIGHT = {"cpu.shares": (2, 1024, 262_144), "cpu.weight": (1, 100, 10_000)}
_weighing = threading.Lock()


class CgroupError(Exception):
    """A cgroup could not be made, joined or removed."""


@dataclass(frozen=True)
class Limits:
    """What one session may use."""

    memory_bytes: int
    cpus: float
    pids: int


def is_cgroup_v2() -> bool:
    return (CGROUP_ROOT / "cgroup.controllers").exists()


def sandbox_cgroups() -> list[SessionCgroup]:
    """Every sandbox's cgroup on this machine, whichever deployment made it."""
    parents = [CGROUP_ROOT / PARENT] if is_cgroup_v2() else list(CGROUP_ROOT.glob(f"*/{PARENT}"))
    names = {
        child.name
        for parent in parents
        if parent.is_dir()
        for child in parent.iterdir()
        if child.is_dir()
    }
    return [SessionCgroup(name) for name in sorted(names)]


def _weight_setting() -> tuple[Path, str]:
    """The sandboxes' parent in the CPU controller, and its weight's file name."""
    if is_cgroup_v2():
        return CGROUP_ROOT / PARENT, "cpu.weight"
    return CGROUP_ROOT / "cpu" / PARENT, "cpu.shares"


def weigh_sandboxes() -> None:
    """Give the sandboxes' parent cgroup the CPU weight of its sandboxes together."""
    parent, setting = _weight_setting()
    _, one, most = CPU_WEIGHT[setting]
    with _weighing:
        if not parent.is_dir():
            return
        total = 0
        for child in parent.iterdir():
            with contextlib.suppress(OSError):  # removed meanwhile
                total += int((child / setting).read_text()) if child.is_dir() else 0
        _write(parent / setting, str(min(most, max(one, total))))


def _write(path: Path, value: str) -> None:
    try:
        path.write_text(value)
    except OSError as error:
        raise CgroupError(f"cannot write {value!r} to {path}: {error.strerror}") from None


@dataclass(frozen=True)
class SessionCgroup:
    """The cgroup (one folder per controller on v1, one folder on v2) of a session."""

    name: str

    @property
    def folders(self) -> list[Path]:
        if is_cgroup_v2():
            return [CGROUP_ROOT / PARENT / self.name]
        return [CGROUP_ROOT / ctrl / PARENT / self.name for ctrl in ("memory", "pids", "cpu")]

    def create(self, limits: Limits) -> None:
        if is_cgroup_v2():
            self._create_v2(limits)
        else:
            self._create_v1(limits)
        weigh_sandboxes()

    def _create_v1(self, limits: Limits) -> None:
        memory, pids, cpu = self.folders
        for folder in self.folders:
            folder.mkdir(parents=True, exist_ok=True)
        _write(memory / "memory.limit_in_bytes", str(limits.memory_bytes))
        if (memory / "memory.memsw.limit_in_bytes").exists():
            _write(memory / "memory.memsw.limit_in_bytes", str(limits.memory_bytes))
        _write(pids / "pids.max", str(limits.pids))
        _write(cpu / "cpu.cfs_period_us", str(CPU_PERIOD_US))
        _write(cpu / "cpu.cfs_quota_us", str(int(limits.cpus * CPU_PERIOD_US)))

    def _create_v2(self, limits: Limits) -> None:
        (folder,) = self.folders
        for level in (CGROUP_ROOT, CGROUP_ROOT / PARENT):
            level.mkdir(exist_ok=True)
            _write(level / "cgroup.subtree_control", "+memory +pids +cpu")
        folder.mkdir(exist_ok=True)
        _write(folder / "memory.max", str(limits.memory_bytes))
        if (folder / "memory.swap.max").exists():
            _write(folder / "memory.swap.max", "0")
        _write(folder / "pids.max", str(limits.pids))
        _write(folder / "cpu.max", f"{int(limits.cpus * CPU_PERIOD_US)} {CPU_PERIOD_US}")

    def set_idle(self, idle: bool) -> None:
        """Weigh next to nothing beside busy processes (idle), or as one process of the host."""
        parent, setting = _weight_setting()
        least, one, _ = CPU_WEIGHT[setting]
        _write(parent / self.name / setting, str(least if idle else one))
        weigh_sandboxes()

    def join(self) -> None:
        """Move the calling process into the cgroup (used just before exec)."""
        for folder in self.folders:
            (folder / "cgroup.procs").write_text(str(os.getpid()))

    def pids(self) -> set[int]:
        found: set[int] = set()
        for folder in self.folders:
            try:
                text = (folder / "cgroup.procs").read_text()
            except OSError:
                continue
            found.update(int(pid) for pid in text.split())
        return found

    def exists(self) -> bool:
        return any(folder.exists() for folder in self.folders)

    def remove(self, timeout: float = 10.0) -> None:
        """Kill whatever is left in the cgroup, then remove it."""
        deadline = time.monotonic() + timeout
        while (remaining := self.pids()) and time.monotonic() < deadline:
            for pid in remaining:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.05)
        for folder in self.folders:
            if folder.exists():
                try:
                    folder.rmdir()
                except OSError as error:
                    raise CgroupError(f"cannot remove {folder}: {error.strerror}") from None
        weigh_sandboxes()
