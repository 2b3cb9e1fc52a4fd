"""The container images: their Dockerfiles pass hadolint and install exactly the pinned
requirements of the local mode (pyproject.toml's extras), the kernels and the sessions'
Jupyter configuration. (Building them needs a container engine and the registries of base
images, which these machines do not have.)"""

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
HADOLINT = Path(sys.executable).with_name("hadolint")


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
                for argument in (a for a in arguments if a != NO_DEPS_IN_IMAGE):
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
    assert froms == ["python:3.11-slim-bookworm AS notebook", "notebook AS notebook-gpu"]
    assert "session-packages.txt" in runs
    assert "images/session-packages.txt" in (ROOT / "bootstrap.sh").read_text()
