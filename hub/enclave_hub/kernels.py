"""Sessions' kernels: Enclave's kernel specs (`kernels/` in the source), installed into an
environment's `share/jupyter/kernels` with that environment's own Python."""

from __future__ import annotations

import argparse
import json
import sys
from importlib import resources
from pathlib import Path

from .sandbox.gpu import DEV, GpuUnavailable, nvidia_devices

DEFAULT_KERNEL = "enclave-python"
GPU_KERNEL = "enclave-python-gpu"


def kernel_specs() -> dict[str, dict]:
    """Enclave's kernel specs by name, as shipped."""
    specs = {}
    for folder in resources.files("enclave_hub.kernelspecs").iterdir():
        spec = folder / "kernel.json"
        if spec.is_file():
            specs[folder.name] = json.loads(spec.read_text())
    return specs


def has_gpu(dev: Path = DEV) -> bool:
    """Whether this machine has a GPU a session could be given (as the sandbox decides)."""
    try:
        nvidia_devices(1, dev)
    except GpuUnavailable:
        return False
    return True


def install_kernels(prefix: Path, python: str, gpu: bool) -> list[Path]:
    """Write the kernel specs under `prefix`, run by `python`; the GPU one only if `gpu`.

    Returns the folders written.
    """
    written = []
    for name, spec in sorted(kernel_specs().items()):
        if name == GPU_KERNEL and not gpu:
            continue
        spec = {**spec, "argv": [python, *spec["argv"][1:]]}
        folder = prefix / "share" / "jupyter" / "kernels" / name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "kernel.json").write_text(json.dumps(spec, indent=2) + "\n")
        written.append(folder)
    return written


def cmd_install(args: argparse.Namespace) -> int:
    gpu = {"yes": True, "no": False, "auto": has_gpu()}[args.gpu]
    for folder in install_kernels(args.prefix, args.python, gpu):
        print(f"Installed the kernel {folder.name} in {folder}")
    return 0


def add_kernel_verbs(verbs) -> None:
    kernels = verbs.add_parser("kernels", help="the kernels sessions offer")
    actions = kernels.add_subparsers(dest="action", required=True)
    install = actions.add_parser("install", help="install Enclave's kernel specs")
    install.add_argument(
        "--prefix", type=Path, default=Path(sys.prefix), help="environment (default: this one)"
    )
    install.add_argument(
        "--python", default=sys.executable, help="the kernels' interpreter (default: this one)"
    )
    install.add_argument(
        "--gpu",
        choices=("auto", "yes", "no"),
        default="auto",
        help="install the GPU kernel: auto installs it where the NVIDIA devices exist",
    )
    install.set_defaults(handler=cmd_install)
