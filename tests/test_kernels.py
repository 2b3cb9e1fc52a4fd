"""The sessions' kernel specs: installed with the environment's own Python, the GPU one only
where a GPU is, and each starts a kernel that runs Enclave's library."""

from __future__ import annotations

import json
import sys

import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager

from enclave_hub.kernels import GPU_KERNEL, has_gpu, install_kernels, kernel_specs


def test_enclave_ships_a_python_kernel_and_a_gpu_one():
    assert set(kernel_specs()) == {"enclave-python", GPU_KERNEL}


@pytest.mark.parametrize("gpu", [False, True])
def test_kernels_are_installed_with_the_environments_python(tmp_path, gpu):
    written = install_kernels(tmp_path, sys.executable, gpu=gpu)
    names = {folder.name for folder in written}
    assert names == ({"enclave-python", GPU_KERNEL} if gpu else {"enclave-python"})
    for folder in written:
        assert folder.parent == tmp_path / "share" / "jupyter" / "kernels"
        spec = json.loads((folder / "kernel.json").read_text())
        assert spec["argv"][0] == sys.executable
        assert spec["metadata"]["enclave"]["gpu"] is (folder.name == GPU_KERNEL)


@pytest.mark.parametrize("name", ["enclave-python", GPU_KERNEL])
def test_each_installed_kernel_starts_and_runs_enclaves_library(tmp_path, name):
    install_kernels(tmp_path, sys.executable, gpu=True)
    specs = KernelSpecManager(kernel_dirs=[str(tmp_path / "share" / "jupyter" / "kernels")])
    assert name in specs.find_kernel_specs()
    manager = KernelManager(kernel_name=name, kernel_spec_manager=specs)
    manager.start_kernel()
    client = manager.client()
    client.start_channels()
    try:
        client.wait_for_ready(timeout=60)
        outputs = []
        reply = client.execute_interactive(
            "import os, enclave; print(enclave.__name__, os.environ.get('MPLBACKEND'), "
            "os.environ.get('SGKIT_DISABLE_NUMBA_CACHE'))",
            timeout=60,
            output_hook=lambda message: outputs.append(message["content"].get("text", "")),
        )
        assert reply["content"]["status"] == "ok"
        assert "".join(outputs).split() == [
            "enclave",
            "module://matplotlib_inline.backend_inline",
            "0",
        ]
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)


def test_the_gpu_kernel_goes_where_the_sandbox_would_give_a_gpu(tmp_path):
    assert has_gpu(tmp_path) is False
    (tmp_path / "nvidia0").touch()
    assert has_gpu(tmp_path) is False  # no driver control device: the sandbox refuses it too
    (tmp_path / "nvidiactl").touch()
    assert has_gpu(tmp_path) is True
