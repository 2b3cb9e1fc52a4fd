"""The NVIDIA device nodes a session with GPUs gets."""

from __future__ import annotations

from pathlib import Path

DEV = Path("/dev")
CONTROL_DEVICES = ("nvidiactl", "nvidia-uvm", "nvidia-uvm-tools")


class GpuUnavailable(Exception):
    """The host has fewer GPUs than a profile asks for."""


def nvidia_devices(count: int, dev: Path = DEV) -> list[str]:
    """Device nodes for the first `count` GPUs and the driver's control devices."""
    if count == 0:
        return []
    cards = [dev / f"nvidia{i}" for i in range(count)]
    missing = [str(d) for d in (*cards, dev / CONTROL_DEVICES[0]) if not d.exists()]
    if missing:
        have = sum(1 for _ in dev.glob("nvidia[0-9]*"))
        raise GpuUnavailable(
            f"{count} GPU(s) asked for, and this host has {have or 'none'} "
            f"({', '.join(missing)} missing)"
        )
    controls = [dev / name for name in CONTROL_DEVICES if (dev / name).exists()]
    return [str(path) for path in (*cards, *controls)]


def visible_devices(count: int) -> str:
    """CUDA_VISIBLE_DEVICES for a session given `count` GPUs."""
    return ",".join(str(i) for i in range(count))
