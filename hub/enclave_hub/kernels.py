"""Sessions' kernels: Enclave's kernel specs (`kernels/` in the source), installed into an
environment's `share/jupyter/kernels` with that environment's own Python."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from importlib import resources
from pathlib import Path

from .sandbox.gpu import DEV, GpuUnavailable, nvidia_devices

DEFAULT_KERNEL = "enclave-python"
GPU_KERNEL = "enclave-python-gpu"
R_KERNEL = "enclave-r"
R_LIBRARIES = (Path("/usr/lib/R/site-library"), Path("/usr/lib/R/library"))


def kernel_specs() -> dict[str, dict]:
    """Enclave's kernel specs by name, as shipped."""
    return {folder.name: json.loads((folder / "kernel.json").read_text()) for folder in _folders()}


def _folders() -> list:
    root = resources.files("enclave_hub.kernelspecs")
    return [folder for folder in root.iterdir() if (folder / "kernel.json").is_file()]


def has_r(libraries: tuple[Path, ...] = R_LIBRARIES) -> bool:
    """Whether R and its Jupyter kernel (Debian's r-base-core and r-cran-irkernel) are here."""
    return shutil.which("R") is not None and any((lib / "IRkernel").is_dir() for lib in libraries)


def has_gpu(dev: Path = DEV) -> bool:
    """Whether this machine has a GPU a session could be given (as the sandbox decides)."""
    try:
        nvidia_devices(1, dev)
    except GpuUnavailable:
        return False
    return True


def install_kernels(prefix: Path, python: str, gpu: bool, r: bool) -> list[Path]:
    """Write the kernel specs under `prefix` with `python` as the Python of each (the R kernel
    reaches the library through it); the GPU one only if `gpu`, the R one only if `r`.

    Returns the folders written.
    """
    written = []
    for source in sorted(_folders(), key=lambda folder: folder.name):
        name = source.name
        if (name == GPU_KERNEL and not gpu) or (name == R_KERNEL and not r):
            continue
        spec = json.loads((source / "kernel.json").read_text())
        if spec["language"] == "python":
            spec["argv"] = [python, *spec["argv"][1:]]
        else:
            spec["env"] = {**spec["env"], "ENCLAVE_PYTHON": python}
        folder = prefix / "share" / "jupyter" / "kernels" / name
        folder.mkdir(parents=True, exist_ok=True)
        for resource in source.iterdir():
            if resource.is_file() and resource.name != "kernel.json":
                (folder / resource.name).write_bytes(resource.read_bytes())
        (folder / "kernel.json").write_text(json.dumps(spec, indent=2) + "\n")
        written.append(folder)
    return written


def cmd_install(args: argparse.Namespace) -> int:
    gpu = {"yes": True, "no": False, "auto": has_gpu()}[args.gpu]
    r = {"yes": True, "no": False, "auto": has_r()}[args.r]
    for folder in install_kernels(args.prefix, args.python, gpu, r):
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
    install.add_argument(
        "--r",
        choices=("auto", "yes", "no"),
        default="auto",
        help="install the R kernel: auto installs it where R and IRkernel are installed",
    )
    install.set_defaults(handler=cmd_install)
