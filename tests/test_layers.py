"""Who may import whom in `hub/enclave_hub`, lazy imports included.

The layers, lowest first: `enclave` (the library: no JupyterHub, nothing of the hub); the
platform layer `core/`, which imports only itself; `sandbox/` and `singleuser/` (the session's
Jupyter server), which import only the platform; the services (a folder holding `service.py`),
which import the platform (and the sandbox) and never one another; the hub plug-ins and the
two deployments, which import no service; and the command line: `cli.py`, the one place that
gathers the services' command-line verbs, and `backup/`, the operator's backup and restore,
which reads what the services keep (the audit log, the airlock's tables and store).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HUB = ROOT / "hub" / "enclave_hub"
LIBRARY = ROOT / "shared_lib" / "enclave"
SERVICES = {path.parent.name for path in HUB.glob("*/service.py")}
LOADERS = {"import_module", "__import__"}
LOWER_LAYERS = {"core": set(), "sandbox": {"core"}, "singleuser": {"core"}}
COMMAND_LINE = {"top": {"enclave_hub.cli"}, "backup": None}  # None: the whole package


def modules(top: Path, prefix: str) -> Iterator[tuple[Path, str, str]]:
    """Each Python file under `top`: its path, its module name and its package."""
    for path in sorted(top.rglob("*.py")):
        parts = path.relative_to(top).with_suffix("").parts
        is_package = path.name == "__init__.py"
        name = ".".join((prefix, *(parts[:-1] if is_package else parts)))
        yield path, name, name if is_package else name.rpartition(".")[0]


def imports(path: Path, package: str) -> Iterator[str]:
    """Every module that `path` imports anywhere: at the top, in functions, by importlib.
    `from . import x` gives both the package and `package.x` (x may be a module)."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names)
        elif (
            isinstance(node, ast.Call)
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and getattr(node.func, "attr", getattr(node.func, "id", "")) in LOADERS
        ):
            yield str(node.args[0].value)


def area(module: str) -> str | None:
    """The part of the hub a module belongs to: 'enclave_hub.airlock.checks' -> 'airlock'."""
    parts = module.split(".")
    if parts[0] != "enclave_hub" or len(parts) < 2:
        return None
    return parts[1] if (HUB / parts[1]).is_dir() else "top"


def crossings() -> dict[str, str]:
    """Every import that crosses a layer the wrong way: 'importer -> imported' (without the
    'enclave_hub.' in front) and the rule it breaks."""
    found = {}
    for path, name, package in modules(HUB, "enclave_hub"):
        mine = area(name)
        for target in imports(path, package):
            theirs = area(target)
            if theirs is None or theirs == mine or not _is_module(target):
                continue
            pair = f"{_short(name)} -> {_short(target)}"
            if mine in SERVICES and theirs in SERVICES:
                found[pair] = "a service imports another service"
            elif mine in SERVICES and theirs not in {"core", "sandbox"}:
                found[pair] = "a service imports the hub's own code"
            elif mine in LOWER_LAYERS and theirs not in LOWER_LAYERS[mine]:
                found[pair] = f"{mine} imports a higher layer"
            elif theirs in SERVICES and mine not in SERVICES and not _is_command_line(name):
                found[pair] = "only the command line imports services"
    for path, name, package in modules(LIBRARY, "enclave"):
        for target in imports(path, package):
            if target.split(".")[0] in {"jupyterhub", "enclave_hub"}:
                found[f"{name} -> {target}"] = "the library imports the hub"
    return found


def _is_command_line(module: str) -> bool:
    modules = COMMAND_LINE.get(area(module) or "", set())
    return modules is None or module in modules


def _short(module: str) -> str:
    return module.removeprefix("enclave_hub.")


def _is_module(name: str) -> bool:
    """Whether `name` is a module or package of the hub (not a name imported from one)."""
    relative = Path(*name.split(".")[1:])
    return (HUB / relative).is_dir() or (HUB / relative).with_suffix(".py").is_file()


def test_no_layer_is_crossed():
    assert crossings() == {}


def test_the_services_are_those_the_docs_name():
    assert {"registry", "audit", "airlock", "dask", "inquiry", "packages", "jobs"} == SERVICES


def test_the_walk_sees_lazy_relative_and_importlib_imports(tmp_path):
    (tmp_path / "m.py").write_text(
        "def f():\n"
        "    from ..airlock import exports\n"
        "    import importlib\n"
        "    importlib.import_module('enclave_hub.dask')\n"
    )
    found = set(imports(tmp_path / "m.py", "enclave_hub.audit"))
    assert {"enclave_hub.airlock", "enclave_hub.airlock.exports", "enclave_hub.dask"} <= found
