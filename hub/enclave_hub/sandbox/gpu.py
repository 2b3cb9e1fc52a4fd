"""The NVIDIA device nodes a session or a job with GPUs gets."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

DEV = Path("/dev")
CONTROL_DEVICES = ("nvidiactl", "nvidia-uvm", "nvidia-uvm-tools")


class GpuUnavailable(Exception):
    """The host has fewer GPUs than a profile asks for."""


def host_gpus(dev: Path = DEV) -> list[int]:
    """The indices of the host's GPUs, by their device nodes."""
    found = (re.fullmatch(r"nvidia(\d+)", path.name) for path in dev.glob("nvidia[0-9]*"))
    return sorted(int(match.group(1)) for match in found if match)


def nvidia_devices(count: int, dev: Path = DEV) -> list[str]:
    """Device nodes for the first `count` GPUs and the driver's control devices."""
    return gpu_devices(range(count), dev)


def gpu_devices(indices: Sequence[int], dev: Path = DEV) -> list[str]:
    """Device nodes for the GPUs `indices` and the driver's control devices."""
    if not indices:
        return []
    cards = [dev / f"nvidia{i}" for i in indices]
    missing = [str(d) for d in (*cards, dev / CONTROL_DEVICES[0]) if not d.exists()]
    if missing:
        have = len(host_gpus(dev))
        raise GpuUnavailable(
            f"{len(indices)} GPU(s) asked for, and this host has {have or 'none'} "
            f"({', '.join(missing)} missing)"
        )
    controls = [dev / name for name in CONTROL_DEVICES if (dev / name).exists()]
    return [str(path) for path in (*cards, *controls)]


def visible_devices(count: int) -> str:
    """CUDA_VISIBLE_DEVICES for a session given `count` GPUs."""
    return ",".join(str(i) for i in range(count))
