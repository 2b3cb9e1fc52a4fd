"""The container images: their Dockerfiles pass hadolint and install exactly the pinned
requirements of the local mode (pyproject.toml's extras), the kernels and the sessions'
Jupyter configuration. test_image_build.py builds the notebook image here and runs it."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from enclave_hub.kubernetes.spawner import SESSION_JUPYTER_CONFIG

ROOT = Path(__file__).parents[1]
DOCKERFILES = sorted((ROOT / "images").glob("*/Dockerfile"))
PROJECT = "/opt/enclave/src"
NO_DEPS = ROOT / "images" / "no-deps-packages.txt"
NO_DEPS_IN_IMAGE = "/tmp/no-deps-packages.txt"
DEPENDENCIES = ROOT / "images" / "dependencies.py"
DEPENDENCIES_IN_IMAGE = "/tmp/dependencies/requirements.txt"
HADOLINT = Path(sys.executable).with_name("hadolint")
BUILD_HERE = ROOT / "images" / "build-here.sh"


def instructions(dockerfile: Path) -> list[tuple[str, str, str]]:
    """(build stage, instruction, arguments) for each instruction, continuations joined."""
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    stage, found = "", []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, arguments = line.partition(" ")
        if instruction.upper() == "FROM":
            stage = arguments.split(" AS ")[-1].strip() if " AS " in arguments else arguments
        found.append((stage, instruction.upper(), arguments.strip()))
    return found


def pip_installs(dockerfile: Path) -> dict[str, list[list[str]]]:
    """The arguments of each `pip install` in each stage, options left out."""
    installs: dict[str, list[list[str]]] = {}
    for stage, instruction, arguments in instructions(dockerfile):
        if instruction != "RUN":
            continue
        command: list[str] = []
        for word in [*shlex.split(arguments), "&&"]:
            if word not in ("&&", "||", "|", ";"):
                command.append(word)
                continue
            if "pip" in command and "install" in command:
                rest = command[command.index("install") + 1 :]
                installs.setdefault(stage, []).append([w for w in rest if not w.startswith("-")])
            command = []
    return installs


def pyproject_extras() -> dict[str, list[Requirement]]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = {
        name: [Requirement(r) for r in reqs]
        for name, reqs in project["optional-dependencies"].items()
    }
    extras[""] = [Requirement(r) for r in project["dependencies"]]
    return extras


def local_mode_extras() -> set[str]:
    """What `./bootstrap.sh up` installs into .venv."""
    (line,) = re.findall(r"^extras=(\S+)$", (ROOT / "bootstrap.sh").read_text(), re.MULTILINE)
    return set(line.split(","))


def image_extras() -> dict[str, set[str]]:
    """The extras of the project each image (Dockerfile and stage) installs."""
    found = {}
    for dockerfile in DOCKERFILES:
        for stage, installs in pip_installs(dockerfile).items():
            for arguments in installs:
                skipped = (NO_DEPS_IN_IMAGE, DEPENDENCIES_IN_IMAGE)
                for argument in (a for a in arguments if a not in skipped):
                    match = re.fullmatch(re.escape(PROJECT) + r"\[([a-z,]+)\]", argument)
                    assert match, f"{dockerfile}: installs {argument!r}, not the pinned project"
                    found[f"{dockerfile.parent.name}:{stage}"] = set(match[1].split(","))
    return found


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_the_dockerfile_passes_hadolint(dockerfile):
    result = subprocess.run(
        [
            str(HADOLINT),
            "--no-color",
            "--config",
            str(ROOT / "images" / ".hadolint.yaml"),
            str(dockerfile),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == ""


def test_the_images_install_the_same_pinned_requirements_as_the_local_mode():
    extras = pyproject_extras()
    images = image_extras()
    assert images == {
        "hub:hub": {"hub", "kubernetes"},
        "notebook:notebook": {"hub", "data", "viz"},
        "notebook:notebook-gpu": {"hub", "data", "viz", "gpu"},
    }
    # Sessions run what `enclave up` runs on one machine, and the hub its hub extra.
    assert images["notebook:notebook"] == local_mode_extras()
    assert "hub" in local_mode_extras()
    versions: dict[str, set[str]] = {}
    for used in images.values():
        for extra in sorted(used | {""}):
            assert extra in extras, f"pyproject.toml has no extra {extra!r}"
            for requirement in extras[extra]:
                (specifier,) = requirement.specifier
                assert specifier.operator == "==", f"{requirement} is not pinned"
                versions.setdefault(requirement.name.lower(), set()).add(specifier.version)
    shared = {name: pins for name, pins in versions.items() if len(pins) > 1}
    assert shared == {}, f"pinned differently in two extras: {shared}"


def test_packages_without_their_dependencies_are_pinned_and_installed_alike():
    """sgkit's caps are older than the project's pins: it is installed apart, after the
    project, in the notebook image as in `.venv`, pinned, and in no extra."""
    pinned = [Requirement(line) for line in NO_DEPS.read_text().splitlines()
              if line.strip() and not line.startswith("#")]  # fmt: skip
    assert [r.name for r in pinned] == ["sgkit"]
    assert all(next(iter(r.specifier)).operator == "==" for r in pinned)
    in_extras = {r.name.lower() for reqs in pyproject_extras().values() for r in reqs}
    assert not in_extras & {r.name.lower() for r in pinned}
    runs = " ".join(
        arguments
        for stage, instruction, arguments in instructions(
            ROOT / "images" / "notebook" / "Dockerfile"
        )
        if instruction in ("RUN", "COPY") and stage == "notebook"
    )
    assert f"images/no-deps-packages.txt {NO_DEPS_IN_IMAGE}" in runs
    assert runs.index("pip check") < runs.index(f"--no-deps -r {NO_DEPS_IN_IMAGE}")
    assert "--no-deps -r images/no-deps-packages.txt" in (ROOT / "bootstrap.sh").read_text()


def test_the_notebook_images_dependencies_come_before_its_code_and_are_the_projects():
    """Their layer is made from pyproject.toml alone, for the extras the project is installed
    with, so a change of the code does not install them again."""
    steps = instructions(ROOT / "images" / "notebook" / "Dockerfile")
    (layer,) = [n for n, (_, what, arguments) in enumerate(steps)
                if what == "RUN" and DEPENDENCIES_IN_IMAGE in arguments]  # fmt: skip
    extras = re.search(r"dependencies\.py \S+ ([a-z,]+)", steps[layer][2])[1].split(",")
    assert set(extras) == image_extras()["notebook:notebook"]
    copied = {word for _, what, arguments in steps[:layer] if what == "COPY"
              for word in arguments.split()}  # fmt: skip
    assert not copied & {"hub", "shared_lib", "kernels", "README.md"}
    listed = subprocess.run(
        [sys.executable, DEPENDENCIES, ROOT / "pyproject.toml", ",".join(extras)],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    wanted = {str(r) for extra in ["", *extras] for r in pyproject_extras()[extra]}
    assert sorted(listed) == sorted(wanted)


def test_the_notebook_image_installs_the_kernels_and_the_sessions_jupyter_configuration():
    steps = instructions(ROOT / "images" / "notebook" / "Dockerfile")
    runs = " ".join(arguments for stage, instruction, arguments in steps if instruction == "RUN")
    assert "enclave kernels install --prefix /usr/local --gpu no --r yes" in runs
    assert "enclave kernels install --prefix /usr/local --gpu yes --r yes" in runs
    assert "jupyter kernelspec remove -y python3" in runs
    assert f"print(s.CONFIG_DIR)')\" {SESSION_JUPYTER_CONFIG}" in runs
    env = " ".join(arguments for stage, instruction, arguments in steps if instruction == "ENV")
    assert f"JUPYTER_CONFIG_DIR={SESSION_JUPYTER_CONFIG}" in env
    users = [arguments for stage, instruction, arguments in steps if instruction == "USER"]
    assert users[-1] == "1000"  # each image ends as the sessions' uid, never root
    froms = [arguments for stage, instruction, arguments in steps if instruction == "FROM"]
    assert froms == ["${BASE} AS notebook", "notebook AS notebook-gpu"]
    # The upstream base by default; images/build-here.sh gives one made with debootstrap.
    args = [arguments for stage, instruction, arguments in steps if instruction == "ARG"]
    assert args == ["BASE=python:3.11-slim-bookworm"]
    assert "session-packages.txt" in runs
    assert "images/session-packages.txt" in (ROOT / "bootstrap.sh").read_text()


def test_the_build_here_fetches_the_wheels_of_what_the_notebook_target_installs():
    (line,) = re.findall(r"^EXTRAS=(\S+)$", BUILD_HERE.read_text(), re.MULTILINE)
    assert set(line.split(",")) == image_extras()["notebook:notebook"]


def package_folder(package: str, package_dirs: dict[str, str]) -> Path:
    top = max((p for p in package_dirs if package == p or package.startswith(p + ".")), key=len)
    return ROOT / package_dirs[top] / Path(*package[len(top) :].split(".")[1:])


def test_the_project_lists_every_package_and_template_that_the_images_install():
    """The images install the project from its source, not editable as .venv does: a package
    or a template that pyproject.toml leaves out is missing from them."""
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    package_dirs, listed = setuptools["package-dir"], set(setuptools["packages"])
    found = set()
    for top, folder in package_dirs.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            found.add(".".join([top, *init.parent.relative_to(ROOT / folder).parts]))
    assert sorted(found - listed) == []
    unlisted = []
    for package in sorted(listed):
        folder = package_folder(package, package_dirs)
        packaged = {
            path
            for pattern in setuptools["package-data"].get(package, [])
            for path in folder.glob(pattern)
        }
        unlisted += [p for p in sorted(folder.glob("templates/*.html")) if p not in packaged]
    assert [str(path.relative_to(ROOT)) for path in unlisted] == []
