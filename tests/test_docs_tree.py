"""The architecture document and the README's layout name the tree as it is: every module and
folder they name exists, and every package of the hub is named in both."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HUB = ROOT / "hub" / "enclave_hub"
ARCHITECTURE = ROOT / "docs" / "architecture.md"
README = ROOT / "README.md"


def hub_packages() -> set[str]:
    """Every package under the hub, as 'name/' or 'name/sub/'."""
    return {
        f"{init.parent.relative_to(HUB).as_posix()}/"
        for init in HUB.rglob("__init__.py")
        if init.parent != HUB and "__pycache__" not in init.parts
    }


def named_paths(text: str) -> set[str]:
    """The paths a document names in backquotes: 'x.py', 'x/', 'x/y.py', 'x/y/'."""
    names = re.findall(r"`([\w./-]+)`", text)
    return {name for name in names if name.endswith((".py", "/")) and not name.startswith(".")}


def exists(path: str) -> bool:
    """Whether `path` is in the repository, the hub, the library, or one of the hub's packages
    (the document names a module inside the package it is describing)."""
    packages = [HUB / package for package in hub_packages()]
    return any((base / path).exists() for base in (ROOT, HUB, ROOT / "shared_lib", *packages))


def readme_layout() -> str:
    text = README.read_text()
    start = text.index("## Repository layout")
    return text[start : text.index("```", text.index("```", start) + 3)]


def test_every_path_the_architecture_names_exists():
    missing = sorted(p for p in named_paths(ARCHITECTURE.read_text()) if not exists(p))
    assert missing == []


def test_the_architecture_names_every_package_of_the_hub():
    named = named_paths(ARCHITECTURE.read_text())
    assert sorted(hub_packages() - named) == []


def test_the_readme_layout_names_every_package_and_only_what_exists():
    layout = readme_layout()
    entries = dict(
        re.findall(r"^(?:hub/enclave_hub/ | {2}([\w/]+/))\s+(.*(?:\n {19}.*)*)", layout, re.M)
    )
    assert set(entries) - {""} == hub_packages()
    for folder, text in entries.items():
        for name in re.findall(r"(?:: |, |the )(\w+)(?=,|\n|$)", text):
            assert (HUB / folder / f"{name}.py").exists() or (HUB / folder / name).is_dir(), (
                f"{folder}{name} is named in the README's layout but does not exist"
            )


def test_the_readme_names_every_secret_of_a_deployment():
    from enclave_hub.core.site_secrets import SECRET_NAMES

    text = README.read_text()
    assert [name for name in SECRET_NAMES if f"`{name}`" not in text] == []


def test_the_generated_configuration_and_the_chart_point_to_the_architecture(tmp_path):
    from enclave_hub.core.site_config import write_default_site_config

    written = write_default_site_config(tmp_path / "state").read_text()
    chart_values = (ROOT / "helm" / "enclave" / "values.yaml").read_text()
    for text in (written, chart_values):
        assert "docs/architecture.md" in text
        assert "DESIGN.md" not in text


def test_the_library_and_the_platform_agree_on_what_crosses_between_them():
    """The library cannot import the hub, so these are written on both sides; they must agree."""
    from enclave.catalog import SESSION_DATA
    from enclave_hub.core.mounts import DATA_MOUNT

    assert SESSION_DATA == DATA_MOUNT
