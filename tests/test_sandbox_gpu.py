"""GPU sessions: the sandbox hands a session the NVIDIA devices only when its profile asks.

Needs a host with an NVIDIA GPU and PyTorch, so it is marked `gpu` and deselected by default
(CI has no GPU): run it there with `pytest -m gpu --noconftest tests/test_sandbox_gpu.py`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from enclave_hub.sandbox.bubblewrap import SandboxView, bwrap_argv
from enclave_hub.sandbox.gpu import (
    GpuUnavailable,
    gpu_devices,
    host_gpus,
    nvidia_devices,
    visible_devices,
)

pytestmark = pytest.mark.gpu

UNPRIVILEGED = 65534
PROBE = (
    "import os, torch\n"
    "print(torch.cuda.is_available(), torch.cuda.device_count(), os.path.exists('/dev/nvidia0'))\n"
)


def _sandboxed(devices: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    base = Path(tempfile.mkdtemp())
    base.chmod(0o755)
    home, project = base / "home", base / "project"
    for folder in (home, project):
        folder.mkdir()
        os.chown(folder, UNPRIVILEGED, UNPRIVILEGED)
    hosts, resolv_conf = base / "hosts", base / "resolv.conf"
    hosts.write_text("127.0.0.1 localhost\n")
    resolv_conf.write_text("")
    view = SandboxView(
        home=home,
        home_inside="/home/gpu",
        project_folder=project,
        datasets={},
        runtime=[Path(sys.prefix).resolve(), Path(__file__).resolve().parents[1]],
        hosts_file=hosts,
        resolv_conf=resolv_conf,
        hostname="gpu-session",
        devices=devices,
    )

    def drop() -> None:
        os.setgroups([])
        os.setgid(UNPRIVILEGED)
        os.setuid(UNPRIVILEGED)

    return subprocess.run(
        bwrap_argv(view, [sys.executable, "-c", PROBE]),
        env={"PATH": os.environ["PATH"], "HOME": "/home/gpu", **env},
        preexec_fn=drop,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_a_gpu_session_sees_its_gpu():
    devices = nvidia_devices(1)
    assert "/dev/nvidia0" in devices and "/dev/nvidiactl" in devices
    result = _sandboxed(devices, {"CUDA_VISIBLE_DEVICES": visible_devices(1)})
    assert result.stdout.split() == ["True", "1", "True"], result.stderr


def test_a_job_sees_the_one_gpu_it_was_given():
    last = host_gpus()[-1]  # on a host of several, not the first
    result = _sandboxed(gpu_devices([last]), {"CUDA_VISIBLE_DEVICES": visible_devices(1)})
    assert result.stdout.split()[:2] == ["True", "1"], result.stderr


def test_a_session_without_a_gpu_profile_sees_no_gpu():
    result = _sandboxed([], {})
    assert result.stdout.split() == ["False", "0", "False"], result.stderr


def test_asking_for_more_gpus_than_the_host_has_is_refused():
    have = len(list(Path("/dev").glob("nvidia[0-9]*")))
    with pytest.raises(GpuUnavailable, match=f"{have + 1} GPU\\(s\\) asked for"):
        nvidia_devices(have + 1)
