"""Which device nodes a session or a job with GPUs gets, read off a /dev of stand-in files (a
real GPU is test_sandbox_gpu's): a job's GPUs by index, and a clear refusal for one the host
lacks."""

from __future__ import annotations

import pytest

from enclave_hub.sandbox.gpu import GpuUnavailable, gpu_devices, host_gpus, nvidia_devices


@pytest.fixture
def dev(tmp_path):
    for name in ("nvidia0", "nvidia1", "nvidia3", "nvidiactl", "nvidia-uvm", "nvidia-modeset"):
        (tmp_path / name).touch()
    return tmp_path


def test_the_hosts_gpus_are_its_numbered_nodes(dev):
    assert host_gpus(dev) == [0, 1, 3]


def test_a_job_gets_the_gpus_it_was_given_and_the_control_devices(dev):
    assert gpu_devices([3], dev) == [
        str(dev / "nvidia3"),
        str(dev / "nvidiactl"),
        str(dev / "nvidia-uvm"),
    ]
    assert nvidia_devices(2, dev)[:2] == [str(dev / "nvidia0"), str(dev / "nvidia1")]
    assert gpu_devices([], dev) == []


def test_a_gpu_the_host_lacks_is_refused_by_name(dev):
    with pytest.raises(
        GpuUnavailable, match=r"1 GPU\(s\) asked for, and this host has 3 \(.*nvidia2 missing\)"
    ):
        gpu_devices([2], dev)
